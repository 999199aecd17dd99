//! The classic Prometheus text format (0.0.4) from the OpenMetrics text that `prometheus-client`
//! writes. The two differ, for what hearth emits, only in three places, and this rewrites exactly
//! those: a counter's `# HELP`/`# TYPE` lines name the sample (`foo_total`) rather than the family
//! (`foo`); `unknown` is spelled `untyped`; and there is no `# UNIT` or `# EOF` line. Samples are
//! copied as they are, less any exemplar (`... # {trace_id="…"} 1.0`), which 0.0.4 cannot carry.

use std::collections::HashSet;

/// Rewrite one OpenMetrics exposition as classic text.
pub fn to_classic(openmetrics: &str) -> String {
    let counters: HashSet<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .filter(|(_, kind)| *kind == "counter")
        .map(|(name, _)| name)
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + counters.len() * 12);
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some((keyword, rest)) = descriptor(line) {
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            let tail = if keyword == "TYPE" && tail == "unknown" { "untyped" } else { tail };
            out.push_str("# ");
            out.push_str(keyword);
            out.push(' ');
            out.push_str(name);
            if counters.contains(name) && !name.ends_with("_total") {
                out.push_str("_total");
            }
            out.push(' ');
            out.push_str(tail);
        } else if line.starts_with('#') {
            out.push_str(line);
        } else {
            out.push_str(without_exemplar(line));
        }
        out.push('\n');
    }
    out
}

fn descriptor(line: &str) -> Option<(&'static str, &str)> {
    if let Some(rest) = line.strip_prefix("# HELP ") {
        Some(("HELP", rest))
    } else {
        line.strip_prefix("# TYPE ").map(|rest| ("TYPE", rest))
    }
}

/// A sample line without its exemplar. Label values are quoted and may hold any character, so
/// the label set is skipped with its quoting before the ` # ` marker is looked for.
fn without_exemplar(line: &str) -> &str {
    let mut labels_end = 0;
    if let Some(open) = line.find(['{', ' ']).filter(|&i| line.as_bytes()[i] == b'{') {
        let (mut quoted, mut escaped) = (false, false);
        for (i, c) in line[open..].char_indices() {
            match (quoted, escaped, c) {
                (true, true, _) => escaped = false,
                (true, false, '\\') => escaped = true,
                (_, false, '"') => quoted = !quoted,
                (false, _, '}') => {
                    labels_end = open + i;
                    break;
                }
                _ => {}
            }
        }
    }
    match line[labels_end..].find(" # ") {
        Some(at) => &line[..labels_end + at],
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENMETRICS: &str = "# HELP vllm:prompt_tokens Number of prefill tokens processed.\n\
# TYPE vllm:prompt_tokens counter\n\
vllm:prompt_tokens_total{model_name=\"m\"} 5\n\
# HELP hearth_x_total Already suffixed.\n\
# TYPE hearth_x_total counter\n\
hearth_x_total{k=\"v\\\"}\"} 1 # {trace_id=\"a\"} 1.0\n\
# HELP q Unknown.\n\
# TYPE q unknown\n\
# UNIT q seconds\n\
q 1\n\
# HELP g A gauge.\n\
# TYPE g gauge\n\
g{l=\"a # {b}\"} 0.5\n\
# EOF\n";

    #[test]
    fn counters_are_described_by_their_sample_name() {
        let classic = to_classic(OPENMETRICS);
        assert!(classic.contains("# HELP vllm:prompt_tokens_total Number of prefill tokens processed.\n"), "{classic}");
        assert!(classic.contains("# TYPE vllm:prompt_tokens_total counter\n"), "{classic}");
        assert!(classic.contains("\nvllm:prompt_tokens_total{model_name=\"m\"} 5\n"), "{classic}");
        assert!(classic.contains("# TYPE hearth_x_total counter\n"), "no double suffix: {classic}");
    }

    #[test]
    fn openmetrics_only_lines_go_and_the_rest_stays() {
        let classic = to_classic(OPENMETRICS);
        assert!(!classic.contains("# EOF") && !classic.contains("# UNIT"), "{classic}");
        assert!(classic.contains("# TYPE q untyped\n"), "{classic}");
        assert!(classic.contains("\nhearth_x_total{k=\"v\\\"}\"} 1\n"), "exemplar dropped: {classic}");
        assert!(classic.contains("\ng{l=\"a # {b}\"} 0.5\n"), "label values untouched: {classic}");
        assert!(classic.contains("# TYPE g gauge\n"), "{classic}");
    }
}
