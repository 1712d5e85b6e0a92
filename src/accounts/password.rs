//! Password hashes (Argon2id) and the strength rules a new password must pass.
//!
//! Hashes are PHC strings (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`): they carry their own
//! parameters and salt, so raising the cost later still verifies every older hash.

use std::{fmt, sync::OnceLock};

use argon2::{
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Argon2,
};
use ring::rand::{SecureRandom, SystemRandom};

use super::AccountError;

/// The shortest password accepted, in characters.
pub const MIN_LENGTH: usize = 10;

/// The lowest zxcvbn score accepted: 3 is "safely unguessable: moderate protection from an
/// offline slow-hash attack" (about 10^10 guesses), which is what a stolen database of
/// Argon2id hashes faces.
const MIN_SCORE: u8 = 3;

/// The hasher. Argon2id with the crate's defaults, which are OWASP's recommended minimum:
/// 19 MiB of memory, 2 passes, 1 lane. Each hash or check costs about 20–40 ms of one core in
/// a release build (several times that in a debug build) and 19 MiB for that moment, so a
/// login form must be rate-limited, which it is anyway against guessing.
fn argon2() -> Argon2<'static> {
    Argon2::default()
}

/// Hashes `password` with a fresh random salt (16 bytes from the system's random source).
pub fn hash(password: &str) -> Result<String, AccountError> {
    let mut salt = [0u8; 16];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| AccountError::Random)?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| AccountError::Hash(e.to_string()))?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AccountError::Hash(e.to_string()))
}

/// Whether `password` matches `hash` (compared in constant time by argon2). A malformed hash
/// matches nothing.
pub fn verify(hash: &str, password: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Spends the time a [`verify`] would, for a login whose account does not exist, so the
/// answer's timing does not tell which names have accounts. Always `false`.
pub fn verify_nobody(password: &str) -> bool {
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    if let Some(h) = DUMMY.get_or_init(|| hash("no account has this password").ok()) {
        // black_box: the result is thrown away, but the work must not be.
        std::hint::black_box(verify(h, password));
    }
    false
}

/// Why a new password was refused, in words for the person choosing it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeakPassword {
    /// Fewer than [`MIN_LENGTH`] characters.
    TooShort {
        /// Its length in characters.
        length: usize,
    },
    /// It contains the user's name (or another word anyone would try first).
    ContainsName(String),
    /// zxcvbn estimates it would be guessed too soon.
    Guessable {
        /// zxcvbn's warning ("this is a very common password"), when it has one.
        warning: Option<String>,
        /// zxcvbn's suggestions ("add another word or two").
        suggestions: Vec<String>,
    },
}

impl fmt::Display for WeakPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WeakPassword::TooShort { length } => write!(
                f,
                "the password is too short ({length} characters; at least {MIN_LENGTH}, please: \
                 a few unrelated words make a good one)"
            ),
            WeakPassword::ContainsName(word) => write!(
                f,
                "the password contains \"{word}\", which anyone guessing it would try first"
            ),
            WeakPassword::Guessable {
                warning,
                suggestions,
            } => {
                f.write_str("the password would be too easy to guess")?;
                if let Some(w) = warning {
                    write!(f, ": {w}")?;
                }
                if !suggestions.is_empty() {
                    write!(f, " ({})", suggestions.join("; "))?;
                }
                Ok(())
            }
        }
    }
}

/// zxcvbn's sentences as a clause: "This is a very common password." → "this is a very
/// common password".
fn clause(sentence: impl fmt::Display) -> String {
    let text = sentence.to_string();
    let text = text.trim().trim_end_matches('.');
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Checks a new password: at least [`MIN_LENGTH`] characters, none of the words in `context`
/// (the user's name, "hedgerow", the school's name; ignoring case, words under 3 characters
/// skipped), and a zxcvbn score of at least 3 with `context` counted as guessable words.
pub fn check_strength(password: &str, context: &[&str]) -> Result<(), WeakPassword> {
    let length = password.chars().count();
    if length < MIN_LENGTH {
        return Err(WeakPassword::TooShort { length });
    }
    let lower = password.to_lowercase();
    for word in context {
        let word = word.trim();
        if word.chars().count() >= 3 && lower.contains(&word.to_lowercase()) {
            return Err(WeakPassword::ContainsName(word.to_string()));
        }
    }
    let entropy = zxcvbn::zxcvbn(password, context);
    if u8::from(entropy.score()) >= MIN_SCORE {
        return Ok(());
    }
    let (warning, suggestions) = match entropy.feedback() {
        Some(feedback) => (
            feedback.warning().map(clause),
            feedback.suggestions().iter().map(clause).collect(),
        ),
        None => (None, Vec::new()),
    };
    Err(WeakPassword::Guessable {
        warning,
        suggestions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash("correct horse battery staple").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify(&h, "correct horse battery staple"));
        assert!(!verify(&h, "correct horse battery stapler"));
        assert!(!verify(&h, ""));
        assert!(!verify("not a hash", "correct horse battery staple"));
        assert!(!verify_nobody("correct horse battery staple"));
        // A fresh salt each time.
        let again = hash("correct horse battery staple").unwrap();
        assert_ne!(h, again);
        assert!(verify(&again, "correct horse battery staple"));
    }

    #[test]
    fn weak_passwords_are_refused_with_a_reason() {
        let ctx = ["alice", "hedgerow"];
        let short = check_strength("Xk9!q", &ctx).unwrap_err();
        assert_eq!(short, WeakPassword::TooShort { length: 5 });
        assert!(short.to_string().contains("too short"), "{short}");

        let common = check_strength("password123", &ctx).unwrap_err();
        assert!(
            matches!(common, WeakPassword::Guessable { .. }),
            "{common:?}"
        );
        assert!(
            common.to_string().contains("common password"),
            "zxcvbn's warning is shown: {common}"
        );

        let named = check_strength("hedgerow-school", &ctx).unwrap_err();
        assert_eq!(named, WeakPassword::ContainsName("hedgerow".into()));
        let named = check_strength("ALICE-loves-tea-2024", &ctx).unwrap_err();
        assert_eq!(named, WeakPassword::ContainsName("alice".into()));
        assert!(named.to_string().contains("\"alice\""), "{named}");

        for weak in ["qwertyuiop", "aaaaaaaaaaaa", "1234567890", "Summer2024!"] {
            let err = check_strength(weak, &ctx).unwrap_err();
            assert!(!err.to_string().is_empty(), "{weak}");
        }
    }

    #[test]
    fn a_long_random_passphrase_is_accepted() {
        check_strength(
            "tractor violet pebble dentist marmalade",
            &["alice", "hedgerow"],
        )
        .unwrap();
        check_strength("vK7#pQ2mZx9w", &["alice"]).unwrap();
    }
}
