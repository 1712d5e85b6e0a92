//! Charts drawn on the server as SVG: no script, readable in print, with the numbers also in
//! a table next to each chart for screen readers.

use std::fmt::Write;

/// One column of a [`columns`] chart.
pub(super) struct Column {
    /// Under the column ("Mon", "14:00").
    pub label: String,
    /// Its total height.
    pub total: u64,
    /// The darker part at the bottom (blocked of all queries).
    pub part: u64,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Columns (all queries, with the blocked part darker), with a title for assistive
/// technology. Labels are thinned out so they never overlap.
pub(super) fn columns(title: &str, data: &[Column]) -> String {
    const W: f64 = 720.0;
    const H: f64 = 200.0;
    const TOP: f64 = 10.0;
    const BOTTOM: f64 = 24.0;
    const LEFT: f64 = 56.0;
    let max = data.iter().map(|c| c.total).max().unwrap_or(0).max(1) as f64;
    let n = data.len().max(1) as f64;
    let slot = (W - LEFT) / n;
    let bar = (slot * 0.8).max(1.0);
    let plot = H - TOP - BOTTOM;
    // Labels stay apart at the largest text the stylesheet gives them (16 units on a narrow
    // screen: about 10 units a character), with a gap.
    let widest = data
        .iter()
        .map(|c| c.label.chars().count())
        .max()
        .unwrap_or(0) as f64;
    let every = ((widest * 10.0 + 12.0) / slot).ceil().max(1.0) as usize;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{t}"><title>{t}</title>"##,
        t = escape(title)
    );
    // Axis: zero and the maximum.
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" y1="{y}" x2="{W}" y2="{y}" stroke="#6b7680"/><text x="{tx}" y="{y}" text-anchor="end">0</text><text x="{tx}" y="{top}" text-anchor="end" dominant-baseline="hanging">{max}</text>"##,
        y = H - BOTTOM,
        tx = LEFT - 6.0,
        top = TOP,
        max = max as u64
    );
    for (i, c) in data.iter().enumerate() {
        let x = LEFT + slot * i as f64 + (slot - bar) / 2.0;
        let h = plot * c.total as f64 / max;
        let hp = plot * c.part as f64 / max;
        let _ = write!(
            svg,
            r##"<rect x="{x:.1}" y="{y:.1}" width="{bar:.1}" height="{h:.1}" fill="#9fc5ae"><title>{l}: {t} queries, {p} blocked</title></rect><rect x="{x:.1}" y="{yp:.1}" width="{bar:.1}" height="{hp:.1}" fill="#a4161a"/>"##,
            y = H - BOTTOM - h,
            yp = H - BOTTOM - hp,
            l = escape(&c.label),
            t = c.total,
            p = c.part,
        );
        if i % every == 0 {
            let _ = write!(
                svg,
                r##"<text x="{cx:.1}" y="{ly}" text-anchor="middle">{l}</text>"##,
                cx = x + bar / 2.0,
                ly = H - 6.0,
                l = escape(&c.label)
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// The width (percent of the largest) of a value's bar in a table.
pub(super) fn share(value: u64, max: u64) -> u64 {
    value
        .saturating_mul(100)
        .checked_div(max)
        .map_or(0, |v| v.min(100))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_bars_scaled() {
        let svg = columns(
            "Queries <today>",
            &[
                Column {
                    label: "a&b".into(),
                    total: 10,
                    part: 5,
                },
                Column {
                    label: "c".into(),
                    total: 0,
                    part: 0,
                },
            ],
        );
        assert!(svg.contains("Queries &lt;today&gt;"));
        assert!(svg.contains("a&amp;b: 10 queries, 5 blocked"));
        assert!(!svg.contains("<today>"));
        // 25 hourly columns: every third labelled; 12 months: every one.
        let hours: Vec<Column> = (0..25)
            .map(|h| Column {
                label: format!("{:02}:00", h % 24),
                total: 1,
                part: 0,
            })
            .collect();
        let svg = columns("A day", &hours);
        assert_eq!(svg.matches("</text>").count() - 2, 9, "{svg}");
        let months: Vec<Column> = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ]
        .iter()
        .map(|m| Column {
            label: m.to_string(),
            total: 1,
            part: 0,
        })
        .collect();
        let svg = columns("A year", &months);
        assert_eq!(svg.matches("</text>").count() - 2, 12, "{svg}");
        assert_eq!(share(5, 10), 50);
        assert_eq!(share(5, 0), 0);
    }
}
