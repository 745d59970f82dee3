ALTER TABLE messages
    DROP FOREIGN KEY messages_recipient_fk,
    DROP KEY messages_recipient_id_idx,
    DROP KEY messages_sender_id_idx,
    DROP COLUMN recipient_id;
