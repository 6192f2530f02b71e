//! The trend in the quality report: for each validate step with a submitter column, each
//! submitter's rows and share of rows quarantined over the line's earlier periods (the
//! counts of their current releases, at most [`crate::plan::history::EARLIER_PERIODS`])
//! and this run's period. On the page a chart of small panels, one per submitter, drawn
//! as inline SVG (no script; a title and a description for assistive technology), and
//! the same numbers as a table, which is the chart's accessible alternative.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use quick_xml::escape::escape as esc;
use serde::Serialize;

use crate::plan::history::{History, Recorded, SubmitterCounts};
use crate::run::accounting::SubmitterQuality;

/// One step's trend.
#[derive(Debug, Clone, Serialize)]
pub struct Trend {
    /// The periods, oldest first; the last is this run's. Earlier periods without a
    /// current release are left out.
    pub periods: Vec<String>,
    /// The run of each earlier period's current release, whose quality report gave its
    /// counts, by period.
    pub runs: BTreeMap<String, String>,
    /// Earlier periods whose counts could not be read, with why.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub unreadable: BTreeMap<String, String>,
    /// Per submitter one point per period, `null` where it has no counts.
    pub submitters: BTreeMap<String, Vec<Option<Point>>>,
}

/// A submitter's counts in one period.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    pub rows: u64,
    pub rejected: u64,
    /// Rows quarantined per row (0 without rows).
    pub reject_share: f64,
}

impl Point {
    fn of(rows: u64, rejected: u64) -> Self {
        Point {
            rows,
            rejected,
            reject_share: if rows == 0 {
                0.0
            } else {
                rejected as f64 / rows as f64
            },
        }
    }
}

/// The trend of each step in `current` (step → submitter → this run's counts), this run's
/// period being `period`.
pub(super) fn trends(
    period: &str,
    current: &BTreeMap<String, BTreeMap<String, SubmitterQuality>>,
    history: &History,
) -> BTreeMap<String, Trend> {
    current
        .iter()
        .map(|(step, now)| (step.clone(), trend(step, period, now, history)))
        .collect()
}

/// The trend of one step.
fn trend(
    step: &str,
    period: &str,
    now: &BTreeMap<String, SubmitterQuality>,
    history: &History,
) -> Trend {
    let mut periods = Vec::new();
    let mut runs = BTreeMap::new();
    let mut unreadable = BTreeMap::new();
    // Each period's counts of the step, oldest first; this run's last.
    let mut columns: Vec<BTreeMap<String, SubmitterCounts>> = Vec::new();
    for p in history.periods.iter().rev() {
        let counts = match &p.recorded {
            Recorded::Counts { run_id, steps } => {
                runs.insert(p.period.clone(), run_id.clone());
                steps.get(step).cloned().unwrap_or_default()
            }
            Recorded::Unreadable(why) => {
                unreadable.insert(p.period.clone(), why.clone());
                BTreeMap::new()
            }
        };
        periods.push(p.period.clone());
        columns.push(counts);
    }
    periods.push(period.to_string());
    columns.push(
        now.iter()
            .map(|(s, q)| {
                let counts = SubmitterCounts {
                    rows: q.rows,
                    rejected: q.rejected,
                };
                (s.clone(), counts)
            })
            .collect(),
    );
    let names: BTreeSet<&String> = columns.iter().flat_map(|c| c.keys()).collect();
    let submitters = names
        .into_iter()
        .map(|s| {
            let points = columns
                .iter()
                .map(|c| c.get(s).map(|c| Point::of(c.rows, c.rejected)))
                .collect();
            (s.clone(), points)
        })
        .collect();
    Trend {
        periods,
        runs,
        unreadable,
        submitters,
    }
}

/// Panels of the chart side by side.
const PANELS_PER_ROW: usize = 4;
/// A panel's width and height, and the height of its plot.
const PANEL_W: f64 = 170.0;
const PANEL_H: f64 = 78.0;
const PLOT_H: f64 = 46.0;
/// Space for the submitter's name above a plot, and at the plot's sides.
const LABEL_H: f64 = 18.0;
const PAD: f64 = 8.0;

/// The trend of every step: a chart and a table each.
pub(super) fn html(h: &mut String, trends: &BTreeMap<String, Trend>) {
    for (i, (step, t)) in trends.iter().enumerate() {
        let span = match (t.periods.first(), t.periods.last()) {
            (Some(a), Some(b)) if a != b => format!("{}–{}", esc(a), esc(b)),
            (Some(a), _) => esc(a).into_owned(),
            _ => String::new(),
        };
        let _ = writeln!(
            h,
            "<h2>Kehitys toimittajittain / Trend by submitter ({}), {span}</h2>",
            esc(step)
        );
        for (period, why) in &t.unreadable {
            let _ = writeln!(
                h,
                "<p class=\"bad\">Jakson {} lukuja ei voitu lukea / the counts of {} cannot be read: {}</p>",
                esc(period),
                esc(period),
                esc(why)
            );
        }
        chart(h, i, step, &span, t);
        table(h, step, t);
    }
}

/// The chart: one panel per submitter, its rows (solid, on its own scale from 0 to its
/// largest count) and its share quarantined (dashed, on the scale of the step's largest
/// share) over the periods.
fn chart(h: &mut String, index: usize, step: &str, span: &str, t: &Trend) {
    let n = t.submitters.len();
    let rows = n.div_ceil(PANELS_PER_ROW).max(1);
    let width = PANELS_PER_ROW as f64 * PANEL_W;
    let height = rows as f64 * PANEL_H;
    let max_share = t
        .submitters
        .values()
        .flatten()
        .flatten()
        .map(|p| p.reject_share)
        .fold(0.0_f64, f64::max);
    let _ = writeln!(
        h,
        "<figure>\n<svg class=\"trend\" role=\"img\" aria-labelledby=\"trend-{index}-title\" aria-describedby=\"trend-{index}-desc\" viewBox=\"0 0 {width:.0} {height:.0}\" width=\"{width:.0}\" height=\"{height:.0}\">\n\
         <title id=\"trend-{index}-title\">Rivit ja karanteeniosuus toimittajittain / Rows and share quarantined by submitter: {} {span}</title>\n\
         <desc id=\"trend-{index}-desc\">Yksi paneeli kullekin {n} toimittajalle: yhtenäinen viiva rivit (toimittajan oma asteikko nollasta), katkoviiva karanteeniin päätyneiden osuus (asteikko 0–{}). One panel for each of {n} submitters: solid line rows (the submitter's own scale from zero), dashed line the share quarantined (scale 0–{}). The numbers are in the table below.</desc>",
        esc(step),
        pct(max_share),
        pct(max_share)
    );
    for (k, (who, points)) in t.submitters.iter().enumerate() {
        let x = (k % PANELS_PER_ROW) as f64 * PANEL_W;
        let y = (k / PANELS_PER_ROW) as f64 * PANEL_H;
        panel(h, (x, y), who, points, max_share);
    }
    let _ = writeln!(
        h,
        "</svg>\n<figcaption class=\"meta\">Rivit (yhtenäinen) ja karanteeniosuus (katkoviiva) jaksoittain / Rows (solid) and share quarantined (dashed) by period; luvut taulukossa / numbers in the table.</figcaption>\n</figure>"
    );
}

/// One submitter's panel at `(x, y)`.
fn panel(h: &mut String, (x, y): (f64, f64), who: &str, points: &[Option<Point>], max_share: f64) {
    let max_rows = points.iter().flatten().map(|p| p.rows).max().unwrap_or(0);
    let last = points.last().copied().flatten();
    let _ = writeln!(
        h,
        "<g transform=\"translate({x:.0},{y:.0})\"><text x=\"{PAD:.0}\" y=\"13\" class=\"who\">{} · {}</text>",
        esc(who),
        last.map_or("–".to_string(), |p| p.rows.to_string())
    );
    let _ = writeln!(
        h,
        "<rect x=\"{PAD:.0}\" y=\"{LABEL_H:.0}\" width=\"{:.0}\" height=\"{PLOT_H:.0}\" class=\"plot\"/>",
        PANEL_W - 3.0 * PAD
    );
    let rows: Vec<Option<f64>> = points
        .iter()
        .map(|p| p.map(|p| scaled(p.rows as f64, max_rows as f64)))
        .collect();
    let shares: Vec<Option<f64>> = points
        .iter()
        .map(|p| p.map(|p| scaled(p.reject_share, max_share)))
        .collect();
    line(h, &rows, "rows");
    line(h, &shares, "share");
    h.push_str("</g>\n");
}

/// A value's height in the plot, from its bottom (0) to its top (1), for a scale of
/// 0–`max`.
fn scaled(v: f64, max: f64) -> f64 {
    if max > 0.0 {
        (v / max).clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// A line through the points that have a value (a gap breaks it), with a dot at each.
fn line(h: &mut String, values: &[Option<f64>], class: &str) {
    let n = values.len();
    let inner = PANEL_W - 3.0 * PAD;
    let at = |i: usize, v: f64| {
        let x = if n > 1 {
            PAD + inner * i as f64 / (n - 1) as f64
        } else {
            PAD + inner / 2.0
        };
        (x, LABEL_H + PLOT_H * (1.0 - v))
    };
    let mut d = String::new();
    let mut open = false;
    for (i, v) in values.iter().enumerate() {
        match v {
            Some(v) => {
                let (x, y) = at(i, *v);
                let _ = write!(d, "{}{x:.1},{y:.1} ", if open { "L" } else { "M" });
                open = true;
            }
            None => open = false,
        }
    }
    if !d.is_empty() {
        let _ = writeln!(h, "<path d=\"{}\" class=\"{class}\"/>", d.trim_end());
    }
    for (i, v) in values.iter().enumerate() {
        if let Some(v) = v {
            let (x, y) = at(i, *v);
            let _ = write!(
                h,
                "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"1.8\" class=\"{class}\"/>"
            );
        }
    }
    h.push('\n');
}

/// The numbers of the chart: a row per submitter, a column per period.
fn table(h: &mut String, step: &str, t: &Trend) {
    let _ = write!(
        h,
        "<table class=\"trend\"><caption>Rivit ja karanteeniosuus jaksoittain / Rows and share quarantined by period ({})</caption>\n<tr><th scope=\"col\">toimittaja</th>",
        esc(step)
    );
    for p in &t.periods {
        let _ = write!(h, "<th scope=\"col\" class=\"n\">{}</th>", esc(p));
    }
    h.push_str("</tr>\n");
    for (who, points) in &t.submitters {
        let _ = write!(h, "<tr><th scope=\"row\">{}</th>", esc(who));
        for p in points {
            match p {
                Some(p) => {
                    let _ = write!(
                        h,
                        "<td class=\"n\">{} <span class=\"meta\">({})</span></td>",
                        p.rows,
                        pct(p.reject_share)
                    );
                }
                None => h.push_str("<td class=\"n\">–</td>"),
            }
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
}

fn pct(x: f64) -> String {
    format!("{:.2} %", x * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::history::EarlierPeriod;

    /// The trend runs from the oldest earlier period to this run's, a submitter without
    /// counts in a period has a gap there, and the page draws it and tabulates it with
    /// every text escaped.
    #[test]
    fn trend_of_each_submitter_over_the_periods() {
        let counts = |v: &[(&str, u64, u64)]| -> BTreeMap<String, SubmitterCounts> {
            v.iter()
                .map(|(s, rows, rejected)| {
                    let c = SubmitterCounts {
                        rows: *rows,
                        rejected: *rejected,
                    };
                    (s.to_string(), c)
                })
                .collect()
        };
        let earlier =
            |period: &str, back: u32, c: BTreeMap<String, SubmitterCounts>| EarlierPeriod {
                period: period.into(),
                back,
                recorded: Recorded::Counts {
                    run_id: "r".into(),
                    steps: [("v".to_string(), c)].into(),
                },
            };
        let history = History {
            periods: vec![
                earlier("2025-02", 1, counts(&[("05", 100, 10), ("<a>", 4, 0)])),
                EarlierPeriod {
                    period: "2025-01".into(),
                    back: 2,
                    recorded: Recorded::Unreadable("gone".into()),
                },
                earlier("2024-12", 3, counts(&[("05", 50, 0)])),
            ],
        };
        let now = BTreeMap::from([(
            "v".to_string(),
            BTreeMap::from([(
                "05".to_string(),
                SubmitterQuality {
                    rows: 200,
                    rejected: 5,
                    violations: BTreeMap::new(),
                },
            )]),
        )]);
        let t = trends("2025-03", &now, &history);
        let v = &t["v"];
        assert_eq!(v.periods, ["2024-12", "2025-01", "2025-02", "2025-03"]);
        assert_eq!(v.unreadable["2025-01"], "gone");
        assert_eq!(v.runs.keys().collect::<Vec<_>>(), ["2024-12", "2025-02"]);
        let rows = |s: &str| -> Vec<Option<u64>> {
            v.submitters[s].iter().map(|p| p.map(|p| p.rows)).collect()
        };
        assert_eq!(rows("05"), [Some(50), None, Some(100), Some(200)]);
        assert_eq!(rows("<a>"), [None, None, Some(4), None]);
        assert_eq!(v.submitters["05"][2].unwrap().reject_share, 0.1);
        let mut page = String::new();
        html(&mut page, &t);
        assert!(
            page.contains("<svg") && page.contains("role=\"img\""),
            "{page}"
        );
        assert!(page.contains("<title id=\"trend-0-title\">"), "{page}");
        assert!(page.contains("<desc id=\"trend-0-desc\">"), "{page}");
        assert!(
            page.contains("&lt;a&gt;") && !page.contains("<a>"),
            "{page}"
        );
        assert!(page.contains("<td class=\"n\">100 <span class=\"meta\">(10.00 %)</span></td>"));
        // The gap breaks the line of `05`: two pieces.
        let path = page
            .lines()
            .find(|l| l.starts_with("<path") && l.contains("rows"))
            .unwrap();
        assert_eq!(path.matches('M').count(), 2, "{path}");
        assert!(!page.contains("<script"));
    }
}
