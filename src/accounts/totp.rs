//! Time-based one-time codes (RFC 6238), the dashboard's second factor: HMAC-SHA1, 6 digits,
//! 30-second steps — what every authenticator app reads from an `otpauth://` QR code.
//!
//! SHA-1 is what the apps support everywhere; as an HMAC keyed with a 160-bit random secret
//! it is not weakened by SHA-1's collision attacks.

use std::fmt;

use ring::{
    hmac,
    rand::{SecureRandom, SystemRandom},
};

use super::AccountError;

/// Digits in a code.
pub const DIGITS: usize = 6;
/// Seconds per time step.
pub const PERIOD: u64 = 30;
/// Bytes in a generated secret (160 bits, RFC 4226's recommendation).
pub const SECRET_LEN: usize = 20;
/// The shortest secret accepted from storage (RFC 4226: at least 128 bits).
const MIN_SECRET_LEN: usize = 16;
/// The longest secret accepted from storage.
const MAX_SECRET_LEN: usize = 64;

/// A shared TOTP secret. Its `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// A new secret of [`SECRET_LEN`] random bytes from the system's random source.
    pub fn generate() -> Result<Secret, AccountError> {
        let mut bytes = vec![0u8; SECRET_LEN];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| AccountError::Random)?;
        Ok(Secret(bytes))
    }

    /// The stored and typed form: base32 (RFC 4648) without padding, as in `otpauth:` URIs.
    pub fn to_base32(&self) -> String {
        data_encoding::BASE32_NOPAD.encode(&self.0)
    }

    /// Reads [`Secret::to_base32`]; spaces, lower case and `=` padding are accepted (as
    /// people type a secret from another app).
    pub fn from_base32(text: &str) -> Result<Secret, AccountError> {
        let clean: String = text
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '=')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let bytes = data_encoding::BASE32_NOPAD
            .decode(clean.as_bytes())
            .map_err(|e| AccountError::BadSecret(format!("not base32 ({e})")))?;
        if !(MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&bytes.len()) {
            return Err(AccountError::BadSecret(format!(
                "{} bytes; {MIN_SECRET_LEN} to {MAX_SECRET_LEN} expected",
                bytes.len()
            )));
        }
        Ok(Secret(bytes))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(hidden)")
    }
}

/// RFC 3986 percent-encoding of everything but the unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `otpauth://` URI an authenticator app enrols from (Google Authenticator's key URI
/// format): `otpauth://totp/Issuer:account?secret=…&issuer=…&algorithm=SHA1&digits=6&period=30`.
pub fn uri(secret: &Secret, account: &str, issuer: &str) -> String {
    let issuer = percent_encode(issuer);
    format!(
        "otpauth://totp/{issuer}:{}?secret={}&issuer={issuer}&algorithm=SHA1&digits={DIGITS}&period={PERIOD}",
        percent_encode(account),
        secret.to_base32(),
    )
}

/// The code for one time step (RFC 4226's HOTP of the step number).
fn code_for_step(secret: &Secret, step: u64) -> u32 {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &secret.0);
    let tag = hmac::sign(&key, &step.to_be_bytes());
    let h = tag.as_ref();
    // Dynamic truncation: the low 4 bits of the last byte pick 4 bytes, top bit cleared.
    let offset = usize::from(h[h.len() - 1] & 0x0f);
    let binary = u32::from_be_bytes([
        h[offset] & 0x7f,
        h[offset + 1],
        h[offset + 2],
        h[offset + 3],
    ]);
    binary % 10u32.pow(DIGITS as u32)
}

/// The code an authenticator app shows at `unix_secs` (for tests and for checking a clock).
pub fn code(secret: &Secret, unix_secs: u64) -> String {
    format!(
        "{:0width$}",
        code_for_step(secret, unix_secs / PERIOD),
        width = DIGITS
    )
}

/// Checks `code` (6 digits; spaces ignored) at `unix_secs`, allowing one step either side
/// for clock drift and typing time. Returns the time step it matched, so the caller can
/// refuse a step already used (a replayed code); `None` if it matches none.
pub fn verify(secret: &Secret, code: &str, unix_secs: u64) -> Option<u64> {
    let typed: Vec<u8> = code.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if typed.len() != DIGITS || !typed.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let now = unix_secs / PERIOD;
    let mut matched = None;
    // Every candidate is computed and compared without an early exit, so the time taken
    // does not say which step (if any) was close.
    for step in [now.saturating_sub(1), now, now.saturating_add(1)] {
        let expected = format!("{:0width$}", code_for_step(secret, step), width = DIGITS);
        let differ = expected
            .bytes()
            .zip(&typed)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if differ == 0 && matched.is_none() {
            matched = Some(step);
        }
    }
    matched
}

/// `uri` as a QR code drawn with Unicode half blocks (two rows of modules per line of
/// text), with the standard quiet zone, for enrolling from a terminal. Drawn light on dark,
/// as most terminals are (authenticator apps read either way round).
pub fn qr_terminal(uri: &str) -> String {
    use qrcode::render::unicode::Dense1x2;
    match qrcode::QrCode::new(uri.as_bytes()) {
        Ok(qr) => qr
            .render::<Dense1x2>()
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
        Err(e) => format!("(the QR code cannot be drawn: {e}; type the secret in instead)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B's SHA-1 secret: the ASCII string "12345678901234567890".
    fn rfc_secret() -> Secret {
        Secret(b"12345678901234567890".to_vec())
    }

    #[test]
    fn rfc6238_test_vectors() {
        // (time, the RFC's 8-digit code); 6 digits are its last six.
        let vectors = [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ];
        let s = rfc_secret();
        for (t, eight) in vectors {
            let six = &eight[2..];
            assert_eq!(code(&s, t), six, "at {t}");
            assert_eq!(verify(&s, six, t), Some(t / PERIOD), "at {t}");
        }
    }

    #[test]
    fn one_step_either_side_and_no_more() {
        let s = rfc_secret();
        let t = 1_234_567_890;
        let step = t / PERIOD;
        let now = code(&s, t);
        assert_eq!(verify(&s, &now, t + PERIOD), Some(step), "a step late");
        assert_eq!(verify(&s, &now, t - PERIOD), Some(step), "a step early");
        assert_eq!(verify(&s, &now, t + 2 * PERIOD), None, "two steps late");
        assert_eq!(verify(&s, &now, t - 2 * PERIOD), None, "two steps early");
        let spaced = format!("{} {}", &now[..3], &now[3..]);
        assert_eq!(verify(&s, &spaced, t), Some(step));
        // Wrong codes: another digit, too short, too long, not digits.
        let last = now.as_bytes()[5] - b'0';
        let wrong = format!("{}{}", &now[..5], (last + 1) % 10);
        for bad in [wrong.as_str(), &now[..5], &format!("{now}0"), "abcdef", ""] {
            assert_eq!(verify(&s, bad, t), None, "{bad:?}");
        }
        // At the epoch, the step before does not underflow.
        assert_eq!(verify(&s, &code(&s, 0), 0), Some(0));
        // Another secret's code does not pass.
        let other = Secret(b"abcdefghijabcdefghij".to_vec());
        assert_ne!(code(&other, t), now);
        assert_eq!(verify(&other, &now, t), None);
    }

    #[test]
    fn base32_round_trip_and_uri() {
        let s = Secret::generate().unwrap();
        assert_eq!(s.0.len(), SECRET_LEN);
        assert_ne!(s, Secret::generate().unwrap());
        let text = s.to_base32();
        assert_eq!(text.len(), 32);
        assert_eq!(Secret::from_base32(&text).unwrap(), s);
        let typed = format!("{} {}==", text[..16].to_lowercase(), &text[16..]);
        assert_eq!(Secret::from_base32(&typed).unwrap(), s);
        assert!(Secret::from_base32("not base32!").is_err());
        assert!(Secret::from_base32("MFRGG").is_err(), "too short a secret");
        assert_eq!(format!("{s:?}"), "Secret(hidden)");

        assert_eq!(rfc_secret().to_base32(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(
            uri(&rfc_secret(), "j.smith@school.sch.uk", "Hedgerow St Mary's"),
            "otpauth://totp/Hedgerow%20St%20Mary%27s:j.smith%40school.sch.uk?\
             secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Hedgerow%20St%20Mary%27s\
             &algorithm=SHA1&digits=6&period=30"
        );
    }

    #[test]
    fn qr_code_is_a_block_of_half_blocks_with_a_quiet_zone() {
        let text = qr_terminal(&uri(&rfc_secret(), "alice", "Hedgerow"));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.len() > 15, "{text}");
        let width = lines[0].chars().count();
        assert!(lines.iter().all(|l| l.chars().count() == width));
        // Light on dark: the quiet zone is drawn in full blocks all round.
        assert!(lines[0].chars().all(|c| c == '█'), "{}", lines[0]);
        // (An odd number of module rows leaves the last line's lower half empty.)
        assert!(lines
            .iter()
            .all(|l| l.chars().take(4).all(|c| c == '█' || c == '▀')));
        assert!(text.contains('▀') || text.contains('▄'));
        assert!(text.contains(' '), "dark modules drawn as spaces");
    }
}
