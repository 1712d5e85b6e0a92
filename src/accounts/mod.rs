//! Dashboard accounts: the roles a member of staff can hold, password hashing and strength
//! ([`password`]), and the second factor ([`totp`]). A leaf: it imports nothing from the
//! store, the DNS path or the dashboard; the store keeps accounts, the dashboard checks them.
//!
//! Roles follow the school's duties, not the software's screens: the Designated
//! Safeguarding Lead sees children's records, a technician runs the filter but does not see
//! who looked up what, and governors see only totals (see [`Role::describe`]).

pub mod password;
pub mod totp;

use std::fmt;

/// What a dashboard account may see and do. An account holds one or more ([`Roles`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The Designated Safeguarding Lead (or a deputy).
    Dsl,
    /// Decides requests to unblock a site.
    Approver,
    /// Runs the filter: lists, policy, health.
    Technician,
    /// A governor: aggregate reports only.
    Governor,
}

impl Role {
    /// Every role, in the order they are listed.
    pub const ALL: [Role; 4] = [Role::Dsl, Role::Approver, Role::Technician, Role::Governor];

    /// The stored, typed and displayed form.
    pub fn label(self) -> &'static str {
        match self {
            Role::Dsl => "dsl",
            Role::Approver => "approver",
            Role::Technician => "technician",
            Role::Governor => "governor",
        }
    }

    /// Parses [`Role::label`] (ASCII case ignored).
    pub fn parse(text: &str) -> Option<Role> {
        Self::ALL
            .into_iter()
            .find(|r| r.label().eq_ignore_ascii_case(text.trim()))
    }

    /// What the role may see and do, in plain English (for the account list and help).
    pub fn describe(self) -> &'static str {
        match self {
            Role::Dsl => {
                "Designated Safeguarding Lead: sees breaches and their cases, pupil-level query \
                 logs and the reports, and manages cases"
            }
            Role::Approver => "decides requests to unblock a site",
            Role::Technician => {
                "manages the lists, the filtering policy and the system's health; sees no \
                 pupil-level records unless also a DSL"
            }
            Role::Governor => "sees aggregate reports only, never a device, a person or an address",
        }
    }

    /// The role's bit in [`Roles`]: fixed forever, since it is stored.
    fn bit(self) -> u8 {
        match self {
            Role::Dsl => 1,
            Role::Approver => 2,
            Role::Technician => 4,
            Role::Governor => 8,
        }
    }
}

impl std::str::FromStr for Role {
    type Err = AccountError;

    fn from_str(text: &str) -> Result<Role, AccountError> {
        Role::parse(text).ok_or_else(|| AccountError::UnknownRole(text.escape_debug().to_string()))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A set of [`Role`]s, stored as a bitmask.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Roles(u8);

impl Roles {
    /// No role.
    pub const NONE: Roles = Roles(0);

    /// Whether `role` is in the set.
    pub fn contains(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }

    /// The set with `role` added.
    #[must_use]
    pub fn with(self, role: Role) -> Roles {
        Roles(self.0 | role.bit())
    }

    /// The roles in the set, in [`Role::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Role> {
        Role::ALL.into_iter().filter(move |r| self.contains(*r))
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The stored form.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// From the stored form. Bits no role owns (written by a newer Hedgerow) are dropped, so
    /// an unknown role never grants anything.
    pub fn from_bits(bits: u8) -> Roles {
        Roles(bits & Role::ALL.iter().fold(0, |all, r| all | r.bit()))
    }
}

impl FromIterator<Role> for Roles {
    fn from_iter<I: IntoIterator<Item = Role>>(iter: I) -> Roles {
        iter.into_iter().fold(Roles::NONE, Roles::with)
    }
}

impl fmt::Display for Roles {
    /// `dsl, approver`; `none` for the empty set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        for (i, role) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(role.label())?;
        }
        Ok(())
    }
}

/// The longest account name.
pub const MAX_NAME_LEN: usize = 64;

/// [`valid_name`], with the reason when it is not.
pub fn check_name(name: &str) -> Result<(), AccountError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(AccountError::BadName(name.escape_debug().to_string()))
    }
}

/// Whether `name` can name an account: 1 to [`MAX_NAME_LEN`] characters of letters, digits,
/// `.`, `_`, `@` and `-` (so an email address works, and a name is safe in a log line, a
/// URL and the `otpauth:` label without escaping surprises).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'))
}

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccountError {
    /// A name that cannot name an account.
    #[error(
        "\"{0}\" cannot name an account: use 1 to {MAX_NAME_LEN} letters, digits, '.', '_', '@' \
         or '-'"
    )]
    BadName(String),
    /// A word that is not a role.
    #[error("\"{0}\" is not a role: use dsl, approver, technician or governor")]
    UnknownRole(String),
    /// The password could not be hashed.
    #[error("cannot hash the password: {0}")]
    Hash(String),
    /// The random source failed.
    #[error("the system's random source failed")]
    Random,
    /// A stored two-factor secret is not usable.
    #[error("the two-factor secret is not valid: {0}")]
    BadSecret(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.label()), Some(r));
            assert!(!r.describe().is_empty());
        }
        assert_eq!(Role::parse("DSL"), Some(Role::Dsl));
        assert_eq!(Role::parse("headteacher"), None);
        assert_eq!("approver".parse::<Role>().unwrap(), Role::Approver);
        let err = "head".parse::<Role>().unwrap_err();
        assert!(err.to_string().contains("dsl, approver"), "{err}");

        let set = Roles::default().with(Role::Dsl).with(Role::Approver);
        assert!(set.contains(Role::Dsl) && set.contains(Role::Approver));
        assert!(!set.contains(Role::Governor));
        assert_eq!(set.to_string(), "dsl, approver");
        assert_eq!(Roles::from_bits(set.bits()), set);
        assert_eq!(set.iter().collect::<Vec<_>>(), [Role::Dsl, Role::Approver]);
        assert_eq!(
            [Role::Approver, Role::Dsl].into_iter().collect::<Roles>(),
            set
        );
        assert!(Roles::default().is_empty());
        assert_eq!(Roles::default().to_string(), "none");

        // Every subset survives the stored form; unknown bits grant nothing.
        for bits in 0..16u8 {
            let r = Roles::from_bits(bits);
            assert_eq!(r.bits(), bits);
            assert_eq!(r.iter().collect::<Roles>(), r);
        }
        assert_eq!(Roles::from_bits(0xf0), Roles::NONE);
        assert_eq!(Roles::from_bits(0x11), Roles::NONE.with(Role::Dsl));
    }

    #[test]
    fn account_names() {
        for good in ["alice", "j.smith", "dsl@school.sch.uk", "tech-1", "A_B"] {
            assert!(valid_name(good), "{good}");
        }
        let long = "a".repeat(MAX_NAME_LEN + 1);
        for bad in ["", "al ice", "alice:", "élise", "a/b", long.as_str()] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert!(valid_name(&"a".repeat(MAX_NAME_LEN)));
        let err = check_name("al ice").unwrap_err();
        assert!(err.to_string().contains("letters, digits"), "{err}");
    }
}
