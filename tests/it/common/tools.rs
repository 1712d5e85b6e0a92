//! The one "tool required under CI" check: tests that drive a real client nobody here wrote
//! (`dig`, dnspython, `openssl`, …) skip with a printed reason when it is missing, and fail
//! instead when `CI=true`.

use std::process::{Command, Stdio};

/// Whether `check` runs and succeeds. When it does not: panics under `CI=true`, otherwise
/// prints why the calling test skips (`install` says how to get the tool).
pub fn required(tool: &str, check: &mut Command, install: &str) -> bool {
    let ok = check
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but {tool} is not available ({install})"
        );
        eprintln!("skipped: {tool} is not available ({install})");
    }
    ok
}

/// `dig` from bind9-dnsutils.
pub fn dig() -> bool {
    required(
        "`dig`",
        Command::new("dig").arg("-v"),
        "apt-get install bind9-dnsutils",
    )
}

/// Python's dnspython.
pub fn dnspython() -> bool {
    required(
        "Python's dnspython",
        Command::new("python3").args(["-c", "import dns.message, dns.query"]),
        "pip install dnspython",
    )
}

/// The `openssl` command.
pub fn openssl() -> bool {
    required(
        "the `openssl` command",
        Command::new("openssl").arg("version"),
        "apt-get install openssl",
    )
}

/// Python's aiosmtpd (a real SMTP server for the alert tests).
pub fn aiosmtpd() -> bool {
    required(
        "Python's aiosmtpd",
        Command::new("python3").args(["-c", "import aiosmtpd.smtp"]),
        "pip install aiosmtpd",
    )
}
