-- `sync` reads a user's messages after an id. With only (channel_id, id) that means every
-- one of the user's conversations; storing the recipient makes it two range scans, one
-- over what the user sent and one over what they received, each bounded by the limit.
-- Nullable: a room message (group chat) has no single recipient.
ALTER TABLE messages
    ADD COLUMN recipient_id BIGINT NULL AFTER sender_id,
    ADD KEY messages_sender_id_idx (sender_id, id),
    ADD KEY messages_recipient_id_idx (recipient_id, id),
    ADD CONSTRAINT messages_recipient_fk FOREIGN KEY (recipient_id) REFERENCES users (id);

UPDATE messages m
JOIN channels c ON c.id = m.channel_id
SET m.recipient_id = IF(c.user_low = m.sender_id, c.user_high, c.user_low);
