-- Usernames are ASCII by rule; a case-insensitive collation makes the unique key enforce
-- "unique case-insensitively" while the column keeps the name as typed.
CREATE TABLE users (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    username VARCHAR(32) CHARACTER SET ascii COLLATE ascii_general_ci NOT NULL,
    password_hash VARCHAR(100) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    UNIQUE KEY users_username_key (username)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- A one-to-one conversation; members are stored ordered (user_low < user_high) so each
-- pair has exactly one row.
CREATE TABLE channels (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_low BIGINT NOT NULL,
    user_high BIGINT NOT NULL,
    created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    UNIQUE KEY channels_members_key (user_low, user_high),
    KEY channels_user_high_idx (user_high),
    CONSTRAINT channels_user_low_fk FOREIGN KEY (user_low) REFERENCES users (id),
    CONSTRAINT channels_user_high_fk FOREIGN KEY (user_high) REFERENCES users (id),
    CONSTRAINT channels_ordered_check CHECK (user_low < user_high)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- (channel_id, id) serves "newest N before id X in channel C" as one range scan;
-- (sender_id, client_id) makes a retried clientId land once.
CREATE TABLE messages (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    channel_id BIGINT NOT NULL,
    sender_id BIGINT NOT NULL,
    client_id VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    body TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    sent_at DATETIME(6) NOT NULL,
    KEY messages_channel_id_idx (channel_id, id),
    UNIQUE KEY messages_sender_client_key (sender_id, client_id),
    CONSTRAINT messages_channel_fk FOREIGN KEY (channel_id) REFERENCES channels (id),
    CONSTRAINT messages_sender_fk FOREIGN KEY (sender_id) REFERENCES users (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
