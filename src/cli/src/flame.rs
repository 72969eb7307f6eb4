//! `--flame-peak` and `--flame-alloc`: flame graphs (SVG, drawn by inferno) of folded stacks of
//! estimated bytes.

use inferno::flamegraph::color::{BasicPalette, Palette};
use inferno::flamegraph::{self, Options};

/// The flame graph of `lines` (folded stacks and their bytes), as SVG text. `lines` must hold
/// some bytes: there is no flame graph of nothing.
pub fn draw(lines: &[(String, u64)], title: &str, subtitle: &str) -> Result<Vec<u8>, String> {
    let mut options = Options::default();
    options.title = title.to_string();
    options.subtitle = Some(subtitle.to_string());
    options.count_name = "bytes".to_string();
    // Memory colours, chosen by name so that a function has the same colour in every graph.
    options.colors = Palette::Basic(BasicPalette::Mem);
    options.hash = true;
    let text: Vec<String> = lines.iter().map(|(k, b)| format!("{k} {b}")).collect();
    let mut svg = Vec::new();
    flamegraph::from_lines(&mut options, text.iter().map(String::as_str), &mut svg)
        .map_err(|e| format!("cannot draw the flame graph: {e}"))?;
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flame_graph_names_its_frames() {
        let lines = vec![
            ("main;parse;Vec<T>::push".to_string(), 3000),
            ("main;load".to_string(), 1000),
        ];
        let svg = String::from_utf8(draw(&lines, "Bytes allocated", "demo").unwrap()).unwrap();
        assert!(svg.contains("Bytes allocated"));
        assert!(svg.contains("parse (3,000 bytes, 75.00%)"), "{svg}");
        assert!(svg.contains("Vec&lt;T&gt;::push"));
        assert!(draw(&[], "t", "s").is_err());
    }
}
