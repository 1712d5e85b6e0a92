//! A one-category ("games") list manifest written into a test's folder, and the
//! configuration that blocks it for 127.0.0.1 — for tests that recompile lists under a
//! running server.

use std::path::Path;

/// Writes `games.txt` (the given names) and a manifest `lists.toml` naming it into `dir`.
pub fn write_lists(dir: &Path, games: &str) {
    std::fs::write(dir.join("games.txt"), games).unwrap();
    std::fs::write(
        dir.join("lists.toml"),
        "[[category]]\nid = \"games\"\ntitle = \"Games\"\nuk_definition = \"Online games\"\nseverity = \"low\"\n\
         [[category.source]]\npath = \"games.txt\"\nformat = \"domains\"\n",
    )
    .unwrap();
}

/// The `[lists]` section that compiles that manifest.
pub fn lists_section(dir: &Path) -> String {
    format!(
        "[lists]\nmanifest = \"{}\"\ncompile_if_missing = true\n",
        dir.join("lists.toml").display()
    )
}

/// Configuration that compiles that manifest and blocks `games` for 127.0.0.1 (no rate limit).
pub fn config_text(dir: &Path) -> String {
    format!(
        "[rate_limit]\nqps = 0\n{}\
         [[group]]\nname = \"pupils\"\nnetworks = [\"127.0.0.1/32\"]\nblock_categories = [\"games\"]\n",
        lists_section(dir)
    )
}
