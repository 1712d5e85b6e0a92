//! Dashboard accounts from the command line: the real `hedgerow user …` binary on a real
//! store in a scratch folder, passwords through standard input, then the store read back
//! through the library and the audit trail through `hedgerow audit list`.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{SystemTime, UNIX_EPOCH},
};

use hedgerow::{
    accounts::{password, totp, Role, Roles},
    clock::Clock,
    store::{self, UserRecord},
};

use crate::common::tempdir::TempDir;

const STRONG: &str = "tractor violet pebble dentist";
const STRONGER: &str = "marmalade quiver lantern obelisk";

/// A configuration with its data in `dir/data`.
fn config_file(dir: &Path) -> PathBuf {
    let path = dir.join("hedgerow.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\ndata_dir = \"{}\"\n\n[lists]\nartifact_dir = \"{}\"\n",
            dir.join("data").display(),
            dir.join("lists").display()
        ),
    )
    .unwrap();
    path
}

/// Runs `hedgerow ARGS --config CONFIG` with `stdin` piped in (a pipe, not a terminal: the
/// password is its first line), as the shell user `test-admin`.
fn hedgerow(config: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hedgerow"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("USER", "test-admin")
        .env_remove("SUDO_USER")
        .env("HEDGEROW_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that fails before reading closes its end early: ignore the broken pipe.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn refused(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected a refusal; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr.clone()).unwrap()
}

fn stored(dir: &Path, name: &str) -> Option<UserRecord> {
    let (reader, _) = store::open_offline(&dir.join("data"), Clock::system()).unwrap();
    reader.user(name).unwrap()
}

/// Every byte of the database files (main file and write-ahead log).
fn database_bytes(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for file in ["hedgerow.sqlite", "hedgerow.sqlite-wal"] {
        if let Ok(bytes) = std::fs::read(dir.join("data").join(file)) {
            all.extend(bytes);
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn weak_duplicate_and_badly_named_accounts_are_refused_and_nothing_is_stored() {
    let dir = TempDir::new("accounts-refused");
    let config = config_file(dir.path());
    let add = |name: &str, pw: &str| hedgerow(&config, &["user", "add", name, "--role", "dsl"], pw);

    let err = refused(&add("alice", "password123\n"));
    assert!(err.contains("very common password"), "{err}");
    assert!(err.contains("nothing was changed"), "{err}");
    let err = refused(&add("alice", "Xk9!q\n"));
    assert!(err.contains("too short"), "{err}");
    let err = refused(&add("alice", "hedgerow-school\n"));
    assert!(err.contains("\"hedgerow\""), "{err}");
    let err = refused(&add("alice", "alice-loves-mondays-77\n"));
    assert!(err.contains("\"alice\""), "{err}");
    let err = refused(&add("alice", ""));
    assert!(err.contains("no password"), "{err}");
    let err = refused(&add("al ice", &format!("{STRONG}\n")));
    assert!(err.contains("cannot name an account"), "{err}");
    let err = refused(&hedgerow(&config, &["user", "add", "alice"], STRONG));
    assert!(err.contains("--role"), "{err}");
    let err = refused(&hedgerow(
        &config,
        &["user", "add", "alice", "--role", "headteacher"],
        STRONG,
    ));
    assert!(err.contains("not a role"), "{err}");

    assert!(stored(dir.path(), "alice").is_none());
    let list = ok(&hedgerow(&config, &["user", "list"], ""));
    assert!(list.contains("no dashboard accounts"), "{list}");
    let audit = ok(&hedgerow(&config, &["audit", "list"], ""));
    assert!(!audit.contains("[account]"), "{audit}");

    // Added once; a second account of the same name (in any case) is refused.
    let out = ok(&add("alice", &format!("{STRONG}\n")));
    assert!(
        out.contains("added the dashboard account alice (dsl)"),
        "{out}"
    );
    let err = refused(&add("ALICE", &format!("{STRONGER}\n")));
    assert!(err.contains("already an account called alice"), "{err}");
    let alice = stored(dir.path(), "alice").unwrap();
    assert!(password::verify(&alice.password_hash, STRONG));
    assert!(!password::verify(&alice.password_hash, STRONGER));
    assert_eq!(
        ok(&hedgerow(&config, &["user", "list"], ""))
            .lines()
            .count(),
        2,
        "a header and one account"
    );
}

#[test]
fn accounts_are_changed_listed_and_audited_without_secrets() {
    let dir = TempDir::new("accounts-lifecycle");
    let config = config_file(dir.path());
    let started = SystemTime::now();
    let out = ok(&hedgerow(
        &config,
        &[
            "user", "add", "alice", "--role", "dsl", "--role", "approver",
        ],
        &format!("{STRONG}\r\n"),
    ));
    assert!(
        out.contains("pupil-level query logs"),
        "roles explained: {out}"
    );
    ok(&hedgerow(
        &config,
        &["user", "add", "bob", "--role", "technician"],
        &format!("{STRONGER}\n"),
    ));
    let alice = stored(dir.path(), "alice").unwrap();
    assert_eq!(
        alice.roles,
        Roles::NONE.with(Role::Dsl).with(Role::Approver)
    );
    assert!(!alice.disabled && alice.totp_secret.is_none() && alice.last_login.is_none());
    assert!(alice.created >= started - std::time::Duration::from_secs(1));
    assert!(
        password::verify(&alice.password_hash, STRONG),
        "the CR of a CRLF line is not part of the password"
    );

    let list = ok(&hedgerow(&config, &["user", "list"], ""));
    let lines: Vec<Vec<&str>> = list
        .lines()
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    assert_eq!(
        lines,
        [
            vec!["name", "roles", "2FA", "disabled", "last login"],
            vec!["alice", "dsl, approver", "no", "no", "never"],
            vec!["bob", "technician", "no", "no", "never"],
        ],
        "{list}"
    );

    // A new password: a weak one changes nothing, a strong one replaces the hash.
    let err = refused(&hedgerow(
        &config,
        &["user", "passwd", "alice"],
        "qwertyuiop\n",
    ));
    assert!(err.contains("easy to guess"), "{err}");
    assert_eq!(
        stored(dir.path(), "alice").unwrap().password_hash,
        alice.password_hash
    );
    ok(&hedgerow(
        &config,
        &["user", "passwd", "alice"],
        &format!("{STRONGER}\n"),
    ));
    let changed = stored(dir.path(), "alice").unwrap();
    assert!(password::verify(&changed.password_hash, STRONGER));
    assert!(!password::verify(&changed.password_hash, STRONG));
    let err = refused(&hedgerow(&config, &["user", "passwd", "carol"], STRONG));
    assert!(err.contains("no account called carol"), "{err}");

    ok(&hedgerow(&config, &["user", "disable", "alice"], ""));
    assert!(stored(dir.path(), "alice").unwrap().disabled);
    let list = ok(&hedgerow(&config, &["user", "list"], ""));
    assert!(
        list.lines()
            .any(|l| l.starts_with("alice") && l.contains(" yes ")),
        "{list}"
    );
    ok(&hedgerow(&config, &["user", "enable", "alice"], ""));
    assert!(!stored(dir.path(), "alice").unwrap().disabled);

    let out = ok(&hedgerow(
        &config,
        &["user", "roles", "alice", "--role", "governor"],
        "",
    ));
    assert!(out.contains("aggregate reports only"), "{out}");
    assert_eq!(
        stored(dir.path(), "alice").unwrap().roles,
        Roles::NONE.with(Role::Governor)
    );
    let err = refused(&hedgerow(&config, &["user", "roles", "alice"], ""));
    assert!(err.contains("--role"), "{err}");
    let err = refused(&hedgerow(&config, &["user", "disable", "carol"], ""));
    assert!(err.contains("no account called carol"), "{err}");

    let audit = ok(&hedgerow(&config, &["audit", "list"], ""));
    let accounts: Vec<&str> = audit.lines().filter(|l| l.contains("[account]")).collect();
    let expected = [
        "added the dashboard account alice (roles: dsl, approver)",
        "added the dashboard account bob (roles: technician)",
        "changed the password of alice",
        "disabled the account alice",
        "enabled the account alice",
        "changed the roles of alice from dsl, approver to governor",
    ];
    assert_eq!(accounts.len(), expected.len(), "{audit}");
    for (line, change) in accounts.iter().zip(expected) {
        assert!(line.contains("command line (test-admin)"), "{line}");
        assert!(line.contains(change), "{line} should say {change}");
    }
    for secret in ["$argon2", STRONG, STRONGER] {
        assert!(!audit.contains(secret), "{secret} in the audit trail");
    }
    ok(&hedgerow(&config, &["audit", "verify"], ""));
    // The database holds hashes, never a password.
    let bytes = database_bytes(dir.path());
    assert!(contains(&bytes, "$argon2id$"));
    assert!(!contains(&bytes, STRONG) && !contains(&bytes, STRONGER));
}

#[test]
fn totp_enrolment_prints_a_uri_and_a_qr_code_and_can_be_removed() {
    let dir = TempDir::new("accounts-totp");
    let config = config_file(dir.path());
    ok(&hedgerow(
        &config,
        &["user", "add", "j.smith@school.sch.uk", "--role", "dsl"],
        &format!("{STRONG}\n"),
    ));
    let err = refused(&hedgerow(&config, &["user", "totp", "carol"], ""));
    assert!(err.contains("no account called carol"), "{err}");

    let out = ok(&hedgerow(
        &config,
        &["user", "totp", "j.smith@school.sch.uk"],
        "",
    ));
    let uri = out
        .lines()
        .find(|l| l.starts_with("otpauth://"))
        .unwrap_or_else(|| panic!("no otpauth URI in {out}"));
    let prefix = "otpauth://totp/Hedgerow:j.smith%40school.sch.uk?secret=";
    assert!(uri.starts_with(prefix), "{uri}");
    assert!(
        uri.ends_with("&issuer=Hedgerow&algorithm=SHA1&digits=6&period=30"),
        "{uri}"
    );
    let secret_text = &uri[prefix.len()..uri.find('&').unwrap()];
    // The QR code: a block of equally wide lines of half and full blocks.
    let qr: Vec<&str> = out
        .lines()
        .filter(|l| !l.is_empty() && l.chars().all(|c| " █▀▄".contains(c)))
        .collect();
    assert!(qr.len() >= 15, "{out}");
    let width = qr[0].chars().count();
    assert!(
        width >= 29 && qr.iter().all(|l| l.chars().count() == width),
        "{out}"
    );

    // What was printed is what was stored, and codes made from it pass.
    let user = stored(dir.path(), "j.smith@school.sch.uk").unwrap();
    assert_eq!(user.totp_secret.as_deref(), Some(secret_text));
    let secret = totp::Secret::from_base32(secret_text).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let code = totp::code(&secret, now);
    assert_eq!(totp::verify(&secret, &code, now), Some(now / totp::PERIOD));
    let list = ok(&hedgerow(&config, &["user", "list"], ""));
    assert!(
        list.lines()
            .nth(1)
            .is_some_and(|l| l.split_whitespace().nth(2) == Some("yes")),
        "2FA yes: {list}"
    );

    // Enrolling again replaces the secret.
    let again = ok(&hedgerow(
        &config,
        &["user", "totp", "j.smith@school.sch.uk"],
        "",
    ));
    assert!(again.contains("no longer works"), "{again}");
    let replaced = stored(dir.path(), "j.smith@school.sch.uk").unwrap();
    assert_ne!(replaced.totp_secret.as_deref(), Some(secret_text));

    ok(&hedgerow(
        &config,
        &["user", "totp", "j.smith@school.sch.uk", "--remove"],
        "",
    ));
    assert!(stored(dir.path(), "j.smith@school.sch.uk")
        .unwrap()
        .totp_secret
        .is_none());
    let list = ok(&hedgerow(&config, &["user", "list"], ""));
    assert!(
        list.lines()
            .nth(1)
            .is_some_and(|l| l.split_whitespace().nth(2) == Some("no")),
        "2FA no: {list}"
    );

    let audit = ok(&hedgerow(&config, &["audit", "list"], ""));
    assert_eq!(
        audit
            .lines()
            .filter(|l| l.contains("[account] set up two-factor sign-in for j.smith@school.sch.uk"))
            .count(),
        2,
        "{audit}"
    );
    assert!(audit.contains("[account] removed two-factor sign-in from j.smith@school.sch.uk"));
    assert!(!audit.contains(secret_text), "{audit}");
}
