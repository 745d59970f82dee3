DROP TABLE read_marks;
DROP TABLE room_members;
DROP TABLE rooms;
DELETE m FROM messages m JOIN channels c ON c.id = m.channel_id WHERE c.user_low IS NULL;
DELETE FROM channels WHERE user_low IS NULL;
ALTER TABLE channels
    MODIFY user_low BIGINT NOT NULL,
    MODIFY user_high BIGINT NOT NULL;
