// The tables of migrations/, as diesel sees them.

diesel::table! {
    users (id) {
        id -> BigInt,
        username -> Varchar,
        password_hash -> Varchar,
        created_at -> Datetime,
    }
}

diesel::table! {
    channels (id) {
        id -> BigInt,
        user_low -> Nullable<BigInt>,
        user_high -> Nullable<BigInt>,
        created_at -> Datetime,
    }
}

diesel::table! {
    messages (id) {
        id -> BigInt,
        channel_id -> BigInt,
        sender_id -> BigInt,
        recipient_id -> Nullable<BigInt>,
        client_id -> Nullable<Varchar>,
        body -> Text,
        sent_at -> Datetime,
    }
}

diesel::table! {
    rooms (id) {
        id -> BigInt,
        channel_id -> BigInt,
        name -> Varchar,
        owner_id -> BigInt,
        created_at -> Datetime,
    }
}

diesel::table! {
    room_members (room_id, user_id) {
        room_id -> BigInt,
        user_id -> BigInt,
        joined_at -> Datetime,
    }
}

diesel::table! {
    read_marks (user_id, channel_id) {
        user_id -> BigInt,
        channel_id -> BigInt,
        up_to -> BigInt,
    }
}

diesel::joinable!(messages -> channels (channel_id));
diesel::joinable!(room_members -> rooms (room_id));
diesel::joinable!(room_members -> users (user_id));
diesel::allow_tables_to_appear_in_same_query!(
    users,
    channels,
    messages,
    rooms,
    room_members,
    read_marks
);
