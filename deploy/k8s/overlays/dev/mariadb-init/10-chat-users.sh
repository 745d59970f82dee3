# shellcheck shell=bash
# The chat database's two users. The MariaDB image's entrypoint sources this file (it is
# in /docker-entrypoint-initdb.d and not executable) once, on the first start of an empty
# data directory, with docker_process_sql defined and the variables below in its
# environment. The same GRANTs apply to a managed MySQL/MariaDB in production:
#
#   CHAT_DB_USER          what every node connects as (chat-node-secrets DATABASE_URL):
#                         rows only - it can create, alter or drop nothing, so a node
#                         never migrates (CHAT_MIGRATE_ON_START=false);
#   CHAT_MIGRATE_DB_USER  what the migration Job connects as (chat-migrate-secrets
#                         DATABASE_URL): the schema's owner.
#
# Named locks (GET_LOCK) need no privilege. Passwords go into URLs and into SQL strings
# here: use URL-safe characters without quotes (e.g. `openssl rand -hex 24`).
# chat-node/tests/it/db_grants.rs runs this file against a real MariaDB.
: "${CHAT_DB_NAME:?}" "${CHAT_DB_USER:?}" "${CHAT_DB_PASSWORD:?}"
: "${CHAT_MIGRATE_DB_USER:?}" "${CHAT_MIGRATE_DB_PASSWORD:?}"
docker_process_sql <<EOSQL
CREATE DATABASE IF NOT EXISTS \`${CHAT_DB_NAME}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS '${CHAT_DB_USER}'@'%' IDENTIFIED BY '${CHAT_DB_PASSWORD}';
GRANT SELECT, INSERT, UPDATE, DELETE ON \`${CHAT_DB_NAME}\`.* TO '${CHAT_DB_USER}'@'%';
CREATE USER IF NOT EXISTS '${CHAT_MIGRATE_DB_USER}'@'%' IDENTIFIED BY '${CHAT_MIGRATE_DB_PASSWORD}';
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, DROP, INDEX, REFERENCES
  ON \`${CHAT_DB_NAME}\`.* TO '${CHAT_MIGRATE_DB_USER}'@'%';
EOSQL
