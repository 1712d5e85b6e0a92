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

/// Where the browser tests find axe-core: `HEDGEROW_AXE_CORE`, else the cache `.ci/run`
/// installs it into (`npm install --prefix target/e2e-node axe-core`).
pub fn axe_core_path() -> std::path::PathBuf {
    std::env::var_os("HEDGEROW_AXE_CORE").map_or_else(
        || {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target/e2e-node/node_modules/axe-core/axe.min.js")
        },
        Into::into,
    )
}

/// A headless browser to drive: Debian's `chromium` and `chromium-driver`, Python's
/// selenium and axe-core's script. Returns the paths of chromium and chromedriver.
pub fn browser() -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let chromium = on_path("chromium").unwrap_or_else(|| "chromium".into());
    let driver = on_path("chromedriver").unwrap_or_else(|| "chromedriver".into());
    let axe = axe_core_path();
    let ok = required(
        "Chromium",
        Command::new(&chromium).arg("--version"),
        "apt-get install chromium",
    ) && required(
        "chromedriver",
        Command::new(&driver).arg("--version"),
        "apt-get install chromium-driver",
    ) && required(
        "Python's selenium",
        Command::new("python3").args(["-c", "import selenium.webdriver"]),
        "pip install selenium",
    ) && required(
        "axe-core",
        Command::new("test").arg("-s").arg(&axe),
        "npm install --prefix target/e2e-node axe-core",
    );
    ok.then_some((chromium, driver))
}

/// The first `name` on `PATH`.
fn on_path(name: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}
