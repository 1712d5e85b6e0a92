//! The `hedgerow user` commands: dashboard accounts from the command line (add, change the
//! password, disable and enable, roles, list, two-factor enrolment). The binary parses the
//! arguments; this reads passwords, checks and hashes them ([`crate::accounts`]) and stores
//! them through the store's commands, which audit every change.
//!
//! A new password comes from standard input when it is not a terminal (its first line: for
//! scripts and tests), else from a prompt with echo off, asked twice.

use std::{
    fmt::Write as _,
    io::{BufRead, IsTerminal, Write},
};

use crate::{
    accounts::{
        self,
        password::{self, WeakPassword},
        totp, AccountError, Roles,
    },
    civil,
    clock::Clock,
    config::Config,
    store::{self, cli::actor, open_offline, Commands, Reader, StoreError},
};

/// The issuer an authenticator app shows next to the account name.
pub const ISSUER: &str = "Hedgerow";

/// Words every new password is checked against besides the account name.
const CONTEXT: &[&str] = &["hedgerow"];

/// Why a `hedgerow user` command failed.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The store refused (no such account, a duplicate, a bad name…).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Hashing, the random source, a name or a secret.
    #[error(transparent)]
    Account(#[from] AccountError),
    /// The new password was refused; nothing was changed.
    #[error("{0}; nothing was changed")]
    Weak(#[from] WeakPassword),
    /// The password could not be read.
    #[error("cannot read the password: {0}")]
    Read(std::io::Error),
    /// Standard input ended before a password.
    #[error("no password given (standard input was empty); nothing was changed")]
    NoPassword,
    /// The two passwords typed differ.
    #[error("the two passwords typed differ; nothing was changed")]
    Mismatch,
}

fn open(config: &Config, clock: Clock) -> Result<(Reader, Commands), StoreError> {
    open_offline(&config.server.data_dir, clock)
}

/// The account's stored name, or [`StoreError::NoSuchUser`].
fn existing(reader: &Reader, name: &str) -> Result<store::UserRecord, UserError> {
    reader
        .user(name)?
        .ok_or_else(|| StoreError::NoSuchUser(name.to_string()).into())
}

/// What each role lets the account do, one line each.
fn describe_roles(roles: Roles) -> String {
    let mut out = String::new();
    for role in roles.iter() {
        let _ = writeln!(out, "  {}: {}", role.label(), role.describe());
    }
    out
}

/// `hedgerow user add NAME --role …`.
pub fn add(config: &Config, name: &str, roles: Roles, clock: Clock) -> Result<String, UserError> {
    accounts::check_name(name)?;
    if roles.is_empty() {
        return Err(StoreError::Invalid("give at least one --role".into()).into());
    }
    let (reader, commands) = open(config, clock)?;
    // Refused before a password is asked for.
    if let Some(user) = reader.user(name)? {
        return Err(StoreError::UserExists(user.name).into());
    }
    let hash = password::hash(&new_password(name)?)?;
    commands.add_user(name, roles, &hash, &actor())?;
    Ok(format!(
        "added the dashboard account {name} ({roles}), which may:\n{}\
         Set up two-factor sign-in with `hedgerow user totp {name}`.\n",
        describe_roles(roles)
    ))
}

/// `hedgerow user passwd NAME`.
pub fn passwd(config: &Config, name: &str, clock: Clock) -> Result<String, UserError> {
    let (reader, commands) = open(config, clock)?;
    let user = existing(&reader, name)?;
    let hash = password::hash(&new_password(&user.name)?)?;
    commands.set_password(&user.name, &hash, &actor())?;
    Ok(format!("changed the password of {}\n", user.name))
}

/// `hedgerow user disable NAME` (`disabled`) and `hedgerow user enable NAME`.
pub fn set_disabled(
    config: &Config,
    name: &str,
    disabled: bool,
    clock: Clock,
) -> Result<String, UserError> {
    let (reader, commands) = open(config, clock)?;
    let user = existing(&reader, name)?;
    commands.set_disabled(&user.name, disabled, &actor())?;
    Ok(if disabled {
        format!(
            "disabled {}: it cannot sign in to the dashboard until enabled again\n",
            user.name
        )
    } else {
        format!("enabled {}\n", user.name)
    })
}

/// `hedgerow user roles NAME --role …`.
pub fn set_roles(
    config: &Config,
    name: &str,
    roles: Roles,
    clock: Clock,
) -> Result<String, UserError> {
    let (reader, commands) = open(config, clock)?;
    let user = existing(&reader, name)?;
    commands.set_roles(&user.name, roles, &actor())?;
    Ok(format!(
        "{} now has the roles {roles} (was {}), and may:\n{}",
        user.name,
        user.roles,
        describe_roles(roles)
    ))
}

/// `hedgerow user list`: name, roles, two-factor, disabled, last sign-in. Never a hash.
pub fn list(config: &Config, clock: Clock) -> Result<String, UserError> {
    let (reader, _) = open(config, clock)?;
    let users = reader.users()?;
    if users.is_empty() {
        return Ok(
            "there are no dashboard accounts yet: add one with `hedgerow user add NAME --role dsl`\n"
                .into(),
        );
    }
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let rows: Vec<[String; 5]> = users
        .iter()
        .map(|u| {
            [
                u.name.clone(),
                u.roles.to_string(),
                yes_no(u.two_factor()).to_string(),
                yes_no(u.disabled).to_string(),
                u.last_login
                    .map(civil::format_rfc3339)
                    .unwrap_or_else(|| "never".into()),
            ]
        })
        .collect();
    let header = ["name", "roles", "2FA", "disabled", "last login"].map(String::from);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (cell, w) in row.iter().zip(widths) {
            let _ = write!(line, "{cell:w$}  ");
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    Ok(out)
}

/// `hedgerow user totp NAME`: a new secret, stored, shown as an `otpauth:` URI and a QR
/// code; with `remove`, two-factor sign-in is switched off for the account.
pub fn totp(config: &Config, name: &str, remove: bool, clock: Clock) -> Result<String, UserError> {
    let (reader, commands) = open(config, clock)?;
    let user = existing(&reader, name)?;
    if remove {
        commands.set_totp(&user.name, None, &actor())?;
        return Ok(format!(
            "removed two-factor sign-in from {}: it signs in with its password alone until \
             enrolled again\n",
            user.name
        ));
    }
    let secret = totp::Secret::generate()?;
    let encoded = secret.to_base32();
    commands.set_totp(&user.name, Some(&encoded), &actor())?;
    let uri = totp::uri(&secret, &user.name, ISSUER);
    let grouped = encoded
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let mut out = String::new();
    if user.two_factor() {
        let _ = writeln!(
            out,
            "{} had two-factor sign-in already: the old authenticator entry no longer works.",
            user.name
        );
    }
    let _ = writeln!(
        out,
        "two-factor sign-in is set up for {}. Scan this code with an authenticator app \
         (or type in the secret {grouped}),\nthen sign in with the 6-digit code it shows.\n",
        user.name
    );
    let _ = writeln!(out, "{}\n", totp::qr_terminal(&uri));
    let _ = writeln!(out, "{uri}\n");
    let _ = writeln!(
        out,
        "Anyone who sees this code or secret can make codes for {}: clear the screen when done.",
        user.name
    );
    Ok(out)
}

/// Reads a new password for `name` and checks its strength.
fn new_password(name: &str) -> Result<String, UserError> {
    let context: Vec<&str> = std::iter::once(name)
        .chain(CONTEXT.iter().copied())
        .collect();
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        let n = stdin.lock().read_line(&mut line).map_err(UserError::Read)?;
        if n == 0 {
            return Err(UserError::NoPassword);
        }
        let pw = line.strip_suffix('\n').unwrap_or(&line);
        let pw = pw.strip_suffix('\r').unwrap_or(pw).to_string();
        password::check_strength(&pw, &context)?;
        return Ok(pw);
    }
    let first = prompt_hidden(&format!(
        "New password for {name} (at least {} characters; a few unrelated words are good): ",
        password::MIN_LENGTH
    ))?;
    // Checked before asking again, so a weak one need not be typed twice.
    password::check_strength(&first, &context)?;
    let second = prompt_hidden("The same password again: ")?;
    if first != second {
        return Err(UserError::Mismatch);
    }
    Ok(first)
}

/// Asks on standard error and reads a line from the terminal on standard input with echo
/// off.
fn prompt_hidden(prompt: &str) -> Result<String, UserError> {
    let mut err = std::io::stderr();
    let _ = err.write_all(prompt.as_bytes());
    let _ = err.flush();
    let mut line = String::new();
    let n = {
        let _quiet = tty::EchoOff::new().map_err(UserError::Read)?;
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(UserError::Read)?
    };
    if n == 0 {
        let _ = writeln!(err);
        return Err(UserError::NoPassword);
    }
    let pw = line.strip_suffix('\n').unwrap_or(&line);
    Ok(pw.strip_suffix('\r').unwrap_or(pw).to_string())
}

/// Echo off on the terminal, restored on every way out: dropped (return, error, panic
/// unwinding) or killed by a signal (Ctrl-C), so the shell is never left typing blind.
mod tty {
    use std::{io, sync::OnceLock};

    /// The terminal settings from before the first prompt, for the signal handler.
    static ORIGINAL: OnceLock<libc::termios> = OnceLock::new();

    /// Signals that end the process while a password is typed.
    const SIGNALS: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

    extern "C" fn restore_and_die(signal: libc::c_int) {
        // Only async-signal-safe calls: an atomic load, tcsetattr, signal, raise.
        if let Some(original) = ORIGINAL.get() {
            // SAFETY: `original` is a valid termios read by tcgetattr; fd 0 is ours.
            unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, original) };
        }
        // SAFETY: back to the default action and raised again, so the process ends as the
        // signal meant (the shell sees "killed by SIGINT").
        unsafe {
            libc::signal(signal, libc::SIG_DFL);
            libc::raise(signal);
        }
    }

    /// While alive, the terminal on standard input does not echo.
    pub(super) struct EchoOff {
        original: libc::termios,
        handlers: [libc::sighandler_t; SIGNALS.len()],
    }

    impl EchoOff {
        pub(super) fn new() -> io::Result<EchoOff> {
            // SAFETY: termios is plain data; tcgetattr fills it or fails.
            let mut original: libc::termios = unsafe { std::mem::zeroed() };
            // SAFETY: fd 0 and a valid pointer.
            if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut original) } != 0 {
                return Err(io::Error::last_os_error());
            }
            let _ = ORIGINAL.set(original);
            let mut handlers = [libc::SIG_DFL; SIGNALS.len()];
            for (old, signal) in handlers.iter_mut().zip(SIGNALS) {
                // SAFETY: installs an async-signal-safe handler; the old one is kept to be
                // put back on drop.
                *old = unsafe {
                    libc::signal(
                        signal,
                        restore_and_die as extern "C" fn(libc::c_int) as *const ()
                            as libc::sighandler_t,
                    )
                };
                if *old == libc::SIG_IGN {
                    // Ignored (nohup, a script's trap ''): it stays ignored.
                    // SAFETY: as above.
                    unsafe { libc::signal(signal, libc::SIG_IGN) };
                }
            }
            let guard = EchoOff { original, handlers };
            let mut quiet = original;
            // No echo, but the Enter still moves to the next line.
            quiet.c_lflag &= !libc::ECHO;
            quiet.c_lflag |= libc::ECHONL;
            // SAFETY: fd 0 and a valid termios. On failure `guard` restores on drop.
            if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSAFLUSH, &quiet) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(guard)
        }
    }

    impl Drop for EchoOff {
        fn drop(&mut self) {
            // SAFETY: puts back the settings and handlers read in `new`.
            unsafe {
                libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &self.original);
                for (old, signal) in self.handlers.iter().zip(SIGNALS) {
                    libc::signal(signal, *old);
                }
            }
        }
    }
}
