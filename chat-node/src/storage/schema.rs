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
        user_low -> BigInt,
        user_high -> BigInt,
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

diesel::joinable!(messages -> channels (channel_id));
diesel::allow_tables_to_appear_in_same_query!(users, channels, messages);
