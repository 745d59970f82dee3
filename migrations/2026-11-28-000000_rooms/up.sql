-- Group chat. A room's messages live in `messages` like any other, under a channel of
-- their own, so history, paging and `sync` read rooms and one-to-one conversations the
-- same way: a room channel has no user pair (both NULL; the unique key ignores NULLs).
ALTER TABLE channels
    MODIFY user_low BIGINT NULL,
    MODIFY user_high BIGINT NULL;

-- `channel_id` is fixed at creation; `owner_id` moves to the longest-standing member
-- when the owner leaves.
CREATE TABLE rooms (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    channel_id BIGINT NOT NULL,
    name VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    owner_id BIGINT NOT NULL,
    created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    UNIQUE KEY rooms_channel_key (channel_id),
    CONSTRAINT rooms_channel_fk FOREIGN KEY (channel_id) REFERENCES channels (id),
    CONSTRAINT rooms_owner_fk FOREIGN KEY (owner_id) REFERENCES users (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- (user_id) serves "rooms of U" (connect, sync); the primary key "members of R".
CREATE TABLE room_members (
    room_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    joined_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (room_id, user_id),
    KEY room_members_user_id_idx (user_id),
    CONSTRAINT room_members_room_fk FOREIGN KEY (room_id) REFERENCES rooms (id) ON DELETE CASCADE,
    CONSTRAINT room_members_user_fk FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- How far each user has read each conversation (one-to-one or room), for unread counts
-- on every device.
CREATE TABLE read_marks (
    user_id BIGINT NOT NULL,
    channel_id BIGINT NOT NULL,
    up_to BIGINT NOT NULL,
    PRIMARY KEY (user_id, channel_id),
    CONSTRAINT read_marks_user_fk FOREIGN KEY (user_id) REFERENCES users (id),
    CONSTRAINT read_marks_channel_fk FOREIGN KEY (channel_id) REFERENCES channels (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
