DROP TABLE messages;
DROP TABLE channels;
DROP TABLE users;
