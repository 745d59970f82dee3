//! Input rules from PROTOCOL.md, as plain functions both the node and clients call.

use crate::error::{ApiError, ErrorCode};

pub const USERNAME_MIN: usize = 3;
pub const USERNAME_MAX: usize = 32;
pub const PASSWORD_MIN_BYTES: usize = 8;
/// bcrypt ignores everything past 72 bytes, so longer passwords would be silently truncated.
pub const PASSWORD_MAX_BYTES: usize = 72;
pub const MESSAGE_MAX_CHARS: usize = 4000;
pub const CLIENT_ID_MAX_CHARS: usize = 64;
pub const ROOM_NAME_MAX_CHARS: usize = 64;

pub fn is_username_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

pub fn username(name: &str) -> Result<(), ApiError> {
    let len = name.chars().count();
    if !(USERNAME_MIN..=USERNAME_MAX).contains(&len) {
        return Err(ApiError::new(
            ErrorCode::InvalidUsername,
            format!("a username has {USERNAME_MIN} to {USERNAME_MAX} characters"),
        ));
    }
    if !name.chars().all(is_username_char) {
        return Err(ApiError::new(
            ErrorCode::InvalidUsername,
            "a username uses only letters, digits, '_', '.' and '-'",
        ));
    }
    Ok(())
}

pub fn password(password: &str) -> Result<(), ApiError> {
    let len = password.len();
    if !(PASSWORD_MIN_BYTES..=PASSWORD_MAX_BYTES).contains(&len) {
        return Err(ApiError::new(
            ErrorCode::InvalidPassword,
            format!("a password has {PASSWORD_MIN_BYTES} to {PASSWORD_MAX_BYTES} bytes"),
        ));
    }
    Ok(())
}

pub fn message_text(text: &str) -> Result<(), ApiError> {
    if text.trim().is_empty() {
        return Err(ApiError::new(
            ErrorCode::EmptyMessage,
            "a message needs some text",
        ));
    }
    if text.chars().count() > MESSAGE_MAX_CHARS {
        return Err(ApiError::new(
            ErrorCode::MessageTooLong,
            format!("a message has at most {MESSAGE_MAX_CHARS} characters"),
        ));
    }
    Ok(())
}

pub fn client_id(id: &str) -> Result<(), ApiError> {
    let len = id.chars().count();
    if len == 0 || len > CLIENT_ID_MAX_CHARS {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("clientId is a string of 1 to {CLIENT_ID_MAX_CHARS} characters"),
        ));
    }
    Ok(())
}

/// A room name: 1 to 64 characters, not blank.
pub fn room_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() || name.chars().count() > ROOM_NAME_MAX_CHARS {
        return Err(ApiError::new(
            ErrorCode::InvalidRoomName,
            format!("a room name has 1 to {ROOM_NAME_MAX_CHARS} characters and is not blank"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code<T>(r: Result<T, ApiError>) -> Option<ErrorCode> {
        r.err().map(|e| e.code)
    }

    #[test]
    fn usernames_follow_the_protocol_rules() {
        assert_eq!(code(username("bob")), None);
        assert_eq!(code(username("A_b.c-9")), None);
        assert_eq!(code(username(&"x".repeat(32))), None);
        assert_eq!(code(username("ab")), Some(ErrorCode::InvalidUsername));
        assert_eq!(
            code(username(&"x".repeat(33))),
            Some(ErrorCode::InvalidUsername)
        );
        assert_eq!(
            code(username("bob smith")),
            Some(ErrorCode::InvalidUsername)
        );
        assert_eq!(code(username("bøb")), Some(ErrorCode::InvalidUsername));
        assert_eq!(code(username("")), Some(ErrorCode::InvalidUsername));
    }

    #[test]
    fn passwords_are_counted_in_bytes() {
        assert_eq!(code(password("12345678")), None);
        assert_eq!(code(password("1234567")), Some(ErrorCode::InvalidPassword));
        assert_eq!(code(password(&"a".repeat(72))), None);
        assert_eq!(
            code(password(&"a".repeat(73))),
            Some(ErrorCode::InvalidPassword)
        );
        // 25 three-byte characters are 75 bytes: over bcrypt's limit.
        assert_eq!(
            code(password(&"€".repeat(25))),
            Some(ErrorCode::InvalidPassword)
        );
    }

    #[test]
    fn message_texts_must_have_content_and_fit() {
        assert_eq!(code(message_text("hi")), None);
        assert_eq!(code(message_text("   \n\t")), Some(ErrorCode::EmptyMessage));
        assert_eq!(code(message_text("")), Some(ErrorCode::EmptyMessage));
        assert_eq!(code(message_text(&"é".repeat(4000))), None);
        assert_eq!(
            code(message_text(&"a".repeat(4001))),
            Some(ErrorCode::MessageTooLong)
        );
    }

    #[test]
    fn room_names_are_short_and_not_blank() {
        assert_eq!(code(room_name("team")), None);
        assert_eq!(code(room_name(&"é".repeat(64))), None);
        assert_eq!(code(room_name("")), Some(ErrorCode::InvalidRoomName));
        assert_eq!(code(room_name(" \t")), Some(ErrorCode::InvalidRoomName));
        assert_eq!(
            code(room_name(&"a".repeat(65))),
            Some(ErrorCode::InvalidRoomName)
        );
    }

    #[test]
    fn client_ids_are_short_non_empty_strings() {
        assert_eq!(code(client_id("c-1")), None);
        assert_eq!(code(client_id("")), Some(ErrorCode::BadRequest));
        assert_eq!(
            code(client_id(&"x".repeat(65))),
            Some(ErrorCode::BadRequest)
        );
    }
}
