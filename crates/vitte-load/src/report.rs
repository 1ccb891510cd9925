//! The run's report: a Markdown page for `bench/`, and a one-screen summary.

use std::fmt::Write;

use hdrhistogram::Histogram;

use crate::{Args, Outcome};

fn ms(us: u64) -> String {
    format!("{:.1}", us as f64 / 1000.0)
}

fn row(name: &str, h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return format!("| {name} | 0 | – | – | – | – |");
    }
    format!(
        "| {name} | {} | {} | {} | {} | {} |",
        h.len(),
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.95)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max()),
    )
}

/// Messages a second actually offered.
fn offered_rate(o: &Outcome) -> f64 {
    o.offered.0 as f64 / o.offered.1.as_secs_f64().max(0.001)
}

/// A few lines for the terminal.
pub fn summary(o: &Outcome) -> String {
    let t = &o.totals;
    let h = &o.histograms;
    let p99 = |h: &Histogram<u64>| {
        if h.is_empty() {
            "–".to_owned()
        } else {
            ms(h.value_at_quantile(0.99))
        }
    };
    format!(
        "offered {} messages in {:.0} s ({:.1}/s) by {} users; answered {}, lost {}, refused {}, answered twice {}; CPU steal {:.0}%\n\
         p99 ms: webhook ack {}, typing {}, reply overhead {}, end to end {}",
        o.offered.0,
        o.offered.1.as_secs_f64(),
        offered_rate(o),
        t.chats,
        t.answered,
        t.lost,
        t.refused_unanswered,
        t.answered_twice,
        o.machine.2,
        p99(&h.ack),
        p99(&h.typing),
        p99(&h.overhead),
        p99(&h.end_to_end),
    )
}

/// The full report.
pub fn markdown(args: &Args, o: &Outcome) -> String {
    let t = &o.totals;
    let h = &o.histograms;
    let mut s = String::new();
    let _ = writeln!(s, "## Run\n");
    if !args.command.is_empty() {
        let _ = writeln!(s, "```\n{}\n```\n", args.command);
    }
    let _ = writeln!(
        s,
        "{} users, {} bot processes, {:.0} messages/s offered for {:.0} s (model answering in {:.1} s); onboarding took {:.0} s, the drain {:.0} s.\n",
        args.users,
        args.bots.len(),
        args.rate,
        args.duration.as_secs_f64(),
        args.model_latency.as_secs_f64(),
        o.onboarded_in.as_secs_f64(),
        o.drained_in.as_secs_f64(),
    );
    let _ = writeln!(s, "## Outcome\n");
    let _ = writeln!(s, "| | |\n|---|---|");
    let _ = writeln!(
        s,
        "| messages offered in the window | {} ({:.1}/s) |",
        o.offered.0,
        offered_rate(o)
    );
    let _ = writeln!(s, "| messages sent in all | {} |", t.sent);
    let _ = writeln!(s, "| answered | {} |", t.answered);
    let _ = writeln!(s, "| replies | {} |", t.replies);
    let _ = writeln!(s, "| lost (never answered, never refused) | {} |", t.lost);
    let _ = writeln!(
        s,
        "| refused with a notice | {} in {} notices |",
        t.refused_unanswered, t.refusals
    );
    let _ = writeln!(
        s,
        "| answered twice or out of order | {} |",
        t.answered_twice
    );
    let _ = writeln!(s, "| updates never delivered | {} |", o.undelivered);
    if let Some((highest, notices, allowed)) = o.abuse {
        let _ = writeln!(
            s,
            "| abuse check: {} quick messages over {} processes, limit {}/min | highest answered m{highest} (at most m{allowed} allowed), {notices} notice(s) |",
            args.abuse_messages,
            args.bots.len(),
            args.abuse_limit
        );
    }
    let _ = writeln!(
        s,
        "\n## Latency (ms, from each message's intended send time)\n"
    );
    let _ = writeln!(
        s,
        "| measure | count | p50 | p95 | p99 | max |\n|---|---|---|---|---|---|"
    );
    let _ = writeln!(s, "{}", row("webhook ack", &h.ack));
    let _ = writeln!(s, "{}", row("time to \"typing\"", &h.typing));
    let _ = writeln!(
        s,
        "{}",
        row("reply overhead (minus the model)", &h.overhead)
    );
    let _ = writeln!(
        s,
        "{}",
        row("end to end (incl. model, batching)", &h.end_to_end)
    );
    if !o.processes.is_empty() {
        let _ = writeln!(s, "\n## Processes (over the window)\n");
        let _ = writeln!(
            s,
            "| process | CPU (% of one core) | peak PSS of all its processes (MB) | peak RSS of its largest process (MB) |\n|---|---|---|---|"
        );
        for (name, cpu, pss, rss) in &o.processes {
            let _ = writeln!(s, "| {name} | {cpu:.0} | {pss:.0} | {rss:.0} |");
        }
    }
    let (busy, idle, steal) = o.machine;
    let _ = writeln!(
        s,
        "\nThe machine's CPU over the window: {busy:.0}% busy, {idle:.0}% idle, {steal:.0}% stolen by the hypervisor (time this virtual machine wanted to run and was not given).\n"
    );
    if !o.events.is_empty() {
        let _ = writeln!(s, "\n## Events\n");
        for (at, command, status) in &o.events {
            let _ = writeln!(s, "- at {at} s: `{command}` ({status})");
        }
    }
    let failures = o.failures(args);
    let _ = writeln!(s, "\n## Verdict\n");
    if failures.is_empty() && t.answered_twice > 0 {
        let _ = writeln!(
            s,
            "No message lost, limits shared; {} replies answered a message again (allowed here: {}, as a killed bot re-sends a reply it showed but had not stored).",
            t.answered_twice, args.max_answered_twice
        );
    } else if failures.is_empty() {
        let _ = writeln!(
            s,
            "No message lost, none answered twice, order kept, limits shared."
        );
    } else {
        for f in failures {
            let _ = writeln!(s, "- FAILED: {f}");
        }
    }
    s
}
