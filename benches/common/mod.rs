//! Helpers shared by the benchmarks.

/// A Markdown table with padded columns.
pub fn print_table(head: &[&str; 4], rows: &[[String; 4]]) {
    let mut width = head.map(str::len);
    for r in rows {
        for (w, cell) in width.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 4]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(width)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("| {} |", padded.join(" | "));
    };
    line(*head);
    println!("|{}|", width.map(|w| "-".repeat(w + 2)).join("|"));
    for r in rows {
        line([&r[0], &r[1], &r[2], &r[3]].map(String::as_str));
    }
}
