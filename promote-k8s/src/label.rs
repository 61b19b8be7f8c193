//! The one naming rule this crate checks itself: an RFC 1123 label, which namespace names and the names of
//! the objects it keeps (Leases, ConfigMaps) must be.

/// Why `name` is not an RFC 1123 label, if it is not.
pub(crate) fn check_label(name: &str) -> std::result::Result<(), &'static str> {
    if name.is_empty() || name.len() > 63 {
        return Err("it must be 1 to 63 characters long");
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err("it may hold only lowercase letters, digits and '-'");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err("it must start and end with a letter or digit");
    }
    Ok(())
}
