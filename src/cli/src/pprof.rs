//! `--pprof`: the stack samples as a gzipped pprof profile (`profile.proto` of the pprof project),
//! laid out as Go's heap profiles are: four values per sample (`alloc_objects/count`,
//! `alloc_space/bytes`, `inuse_objects/count`, `inuse_space/bytes`), a `bytes` label with the
//! requested size, period `space/bytes` R. Locations carry the frames symbolised here, so pprof
//! needs none of the files. The protobuf is written by hand: the message is small and fixed.

use std::collections::HashMap;
use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;

use crate::profile::Profile;
use crate::stacks::{allocated, weight, Moment, Symbolised, Weight};

/// The sample types, in order, as Go names them.
pub const SAMPLE_TYPES: [(&str, &str); 4] = [
    ("alloc_objects", "count"),
    ("alloc_space", "bytes"),
    ("inuse_objects", "count"),
    ("inuse_space", "bytes"),
];

/// Field numbers of `profile.proto`.
mod field {
    pub const PROFILE_SAMPLE_TYPE: u32 = 1;
    pub const PROFILE_SAMPLE: u32 = 2;
    pub const PROFILE_MAPPING: u32 = 3;
    pub const PROFILE_LOCATION: u32 = 4;
    pub const PROFILE_FUNCTION: u32 = 5;
    pub const PROFILE_STRING_TABLE: u32 = 6;
    pub const PROFILE_TIME_NANOS: u32 = 9;
    pub const PROFILE_DURATION_NANOS: u32 = 10;
    pub const PROFILE_PERIOD_TYPE: u32 = 11;
    pub const PROFILE_PERIOD: u32 = 12;
    pub const PROFILE_COMMENT: u32 = 13;
    pub const PROFILE_DEFAULT_SAMPLE_TYPE: u32 = 14;
    pub const VALUE_TYPE_TYPE: u32 = 1;
    pub const VALUE_TYPE_UNIT: u32 = 2;
    pub const SAMPLE_LOCATION_ID: u32 = 1;
    pub const SAMPLE_VALUE: u32 = 2;
    pub const SAMPLE_LABEL: u32 = 3;
    pub const LABEL_KEY: u32 = 1;
    pub const LABEL_NUM: u32 = 3;
    pub const LABEL_NUM_UNIT: u32 = 4;
    pub const MAPPING_ID: u32 = 1;
    pub const MAPPING_MEMORY_START: u32 = 2;
    pub const MAPPING_MEMORY_LIMIT: u32 = 3;
    pub const MAPPING_FILE_OFFSET: u32 = 4;
    pub const MAPPING_FILENAME: u32 = 5;
    pub const MAPPING_HAS_FUNCTIONS: u32 = 7;
    pub const MAPPING_HAS_FILENAMES: u32 = 8;
    pub const MAPPING_HAS_LINE_NUMBERS: u32 = 9;
    pub const MAPPING_HAS_INLINE_FRAMES: u32 = 10;
    pub const LOCATION_ID: u32 = 1;
    pub const LOCATION_MAPPING_ID: u32 = 2;
    pub const LOCATION_ADDRESS: u32 = 3;
    pub const LOCATION_LINE: u32 = 4;
    pub const LINE_FUNCTION_ID: u32 = 1;
    pub const LINE_LINE: u32 = 2;
    pub const FUNCTION_ID: u32 = 1;
    pub const FUNCTION_NAME: u32 = 2;
    pub const FUNCTION_SYSTEM_NAME: u32 = 3;
    pub const FUNCTION_FILENAME: u32 = 4;
}

/// One protobuf message being written. Fields equal to their default are left out, as proto3
/// writers do.
#[derive(Default)]
struct Message(Vec<u8>);

impl Message {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    /// A field's key: its number and wire type (0 varint, 2 length-delimited).
    fn key(&mut self, field: u32, wire: u8) {
        self.varint(u64::from(field) << 3 | u64::from(wire));
    }

    fn uint(&mut self, field: u32, v: u64) {
        if v != 0 {
            self.key(field, 0);
            self.varint(v);
        }
    }

    /// An int64: negative numbers as their two's complement, as protobuf does.
    fn int(&mut self, field: u32, v: i64) {
        self.uint(field, v as u64);
    }

    fn flag(&mut self, field: u32, v: bool) {
        self.uint(field, u64::from(v));
    }

    fn bytes(&mut self, field: u32, data: &[u8]) {
        self.key(field, 2);
        self.varint(data.len() as u64);
        self.0.extend_from_slice(data);
    }

    fn message(&mut self, field: u32, m: Message) {
        self.bytes(field, &m.0);
    }

    /// A packed repeated varint field (proto3's default for repeated numbers).
    fn packed(&mut self, field: u32, values: impl IntoIterator<Item = u64>) {
        let mut inner = Message::default();
        for v in values {
            inner.varint(v);
        }
        if !inner.0.is_empty() {
            self.bytes(field, &inner.0);
        }
    }
}

/// The string table: index 0 is "", as pprof requires.
struct Strings {
    table: Vec<String>,
    index: HashMap<String, i64>,
}

impl Strings {
    fn new() -> Strings {
        Strings {
            table: vec![String::new()],
            index: HashMap::from([(String::new(), 0)]),
        }
    }

    fn id(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.table.len() as i64;
        self.table.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }
}

/// What the profile is written with besides the samples.
pub struct Meta {
    /// When the profile started, nanoseconds since the Unix epoch (0: unknown).
    pub time_nanos: i64,
    /// The moment "in use" counts the live blocks at.
    pub in_use: Moment,
    /// Says what "in use" is, for the profile's comments.
    pub in_use_text: String,
}

/// The pprof profile, protobuf-encoded, not compressed.
pub fn encode(profile: &Profile, symbols: &Symbolised, meta: &Meta) -> Vec<u8> {
    let rate = profile.rate.unwrap_or(1);
    let mut strings = Strings::new();
    let mut out = Message::default();

    for (name, unit) in SAMPLE_TYPES {
        let mut vt = Message::default();
        vt.int(field::VALUE_TYPE_TYPE, strings.id(name));
        vt.int(field::VALUE_TYPE_UNIT, strings.id(unit));
        out.message(field::PROFILE_SAMPLE_TYPE, vt);
    }

    // One sample per (stack, requested size), as Go's heap profiles have them.
    let mut groups: HashMap<(usize, u64), [Weight; 2]> = HashMap::new();
    for a in &profile.allocs {
        let g = groups.entry((a.stack, a.size)).or_insert([Weight::ZERO; 2]);
        g[0] += allocated(a, rate);
        if meta.in_use.is_live(a) {
            g[1] += weight(a.size, rate);
        }
    }
    let mut keys: Vec<(usize, u64)> = groups.keys().copied().collect();
    keys.sort_unstable();
    let bytes_key = strings.id("bytes");
    for key in keys {
        let [all, live] = groups[&key];
        let mut sample = Message::default();
        sample.packed(
            field::SAMPLE_LOCATION_ID,
            symbols.stacks[key.0]
                .locations
                .iter()
                .map(|&l| l as u64 + 1),
        );
        sample.packed(
            field::SAMPLE_VALUE,
            [all.count, all.bytes, live.count, live.bytes].map(|v| v.round().max(0.0) as u64),
        );
        let mut label = Message::default();
        label.int(field::LABEL_KEY, bytes_key);
        label.int(field::LABEL_NUM, key.1 as i64);
        label.int(field::LABEL_NUM_UNIT, bytes_key);
        sample.message(field::SAMPLE_LABEL, label);
        out.message(field::PROFILE_SAMPLE, sample);
    }

    // Mappings: the program's own file first (pprof takes the first for the main binary).
    let main = profile
        .program
        .as_deref()
        .and_then(|p| p.split_ascii_whitespace().next());
    let mut order: Vec<usize> = (0..profile.mappings.len()).collect();
    order.sort_by_key(|&i| Some(profile.mappings[i].path.as_str()) != main);
    let mut with_lines = vec![false; profile.mappings.len()];
    for loc in &symbols.locations {
        if let Some(m) = loc.mapping {
            with_lines[m] |= loc.frames.iter().any(|f| f.line.is_some());
        }
    }
    let mut mapping_id = vec![0u64; profile.mappings.len()];
    for (n, &i) in order.iter().enumerate() {
        mapping_id[i] = n as u64 + 1;
        let m = &profile.mappings[i];
        let mut mm = Message::default();
        mm.uint(field::MAPPING_ID, mapping_id[i]);
        mm.uint(field::MAPPING_MEMORY_START, m.start);
        mm.uint(field::MAPPING_MEMORY_LIMIT, m.end);
        mm.uint(field::MAPPING_FILE_OFFSET, m.offset);
        mm.int(field::MAPPING_FILENAME, strings.id(&m.path));
        // Symbolised here: pprof is not to look for the files again.
        mm.flag(field::MAPPING_HAS_FUNCTIONS, true);
        mm.flag(field::MAPPING_HAS_FILENAMES, with_lines[i]);
        mm.flag(field::MAPPING_HAS_LINE_NUMBERS, with_lines[i]);
        mm.flag(field::MAPPING_HAS_INLINE_FRAMES, with_lines[i]);
        out.message(field::PROFILE_MAPPING, mm);
    }

    // Locations, one per distinct pc, their lines innermost first (the last is the caller the
    // others were inlined into); functions by name and file.
    let mut functions: HashMap<(String, String), u64> = HashMap::new();
    let mut function_list: Vec<(String, String)> = Vec::new();
    for (i, loc) in symbols.locations.iter().enumerate() {
        let mut lm = Message::default();
        lm.uint(field::LOCATION_ID, i as u64 + 1);
        lm.uint(
            field::LOCATION_MAPPING_ID,
            loc.mapping.map_or(0, |m| mapping_id[m]),
        );
        lm.uint(field::LOCATION_ADDRESS, loc.pc);
        for frame in &loc.frames {
            let key = (
                frame.function.clone(),
                frame.file.clone().unwrap_or_default(),
            );
            let id = *functions.entry(key.clone()).or_insert_with(|| {
                function_list.push(key);
                function_list.len() as u64
            });
            let mut line = Message::default();
            line.uint(field::LINE_FUNCTION_ID, id);
            line.int(field::LINE_LINE, i64::from(frame.line.unwrap_or(0)));
            lm.message(field::LOCATION_LINE, line);
        }
        out.message(field::PROFILE_LOCATION, lm);
    }
    for (i, (name, file)) in function_list.iter().enumerate() {
        let mut fm = Message::default();
        fm.uint(field::FUNCTION_ID, i as u64 + 1);
        let name = strings.id(name);
        fm.int(field::FUNCTION_NAME, name);
        fm.int(field::FUNCTION_SYSTEM_NAME, name);
        fm.int(field::FUNCTION_FILENAME, strings.id(file));
        out.message(field::PROFILE_FUNCTION, fm);
    }

    out.int(field::PROFILE_TIME_NANOS, meta.time_nanos);
    out.int(
        field::PROFILE_DURATION_NANOS,
        (profile.duration_ms() as i64).saturating_mul(1_000_000),
    );
    let mut period = Message::default();
    period.int(field::VALUE_TYPE_TYPE, strings.id("space"));
    period.int(field::VALUE_TYPE_UNIT, strings.id("bytes"));
    out.message(field::PROFILE_PERIOD_TYPE, period);
    out.int(field::PROFILE_PERIOD, rate as i64);
    let comment = format!(
        "my_alloc stack samples (R = {rate} bytes); in use: live at {}",
        meta.in_use_text
    );
    let comment = strings.id(&comment);
    out.packed(field::PROFILE_COMMENT, [comment as u64]);
    out.int(
        field::PROFILE_DEFAULT_SAMPLE_TYPE,
        strings.id("inuse_space"),
    );

    // The string table last, once every string has its index.
    for s in &strings.table {
        out.bytes(field::PROFILE_STRING_TABLE, s.as_bytes());
    }
    out.0
}

/// The profile gzipped, as pprof reads it.
pub fn gzipped(profile: &Profile, symbols: &Symbolised, meta: &Meta) -> Result<Vec<u8>, String> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(&encode(profile, symbols, meta))
        .and_then(|()| gz.finish())
        .map_err(|e| format!("cannot compress the pprof profile: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_fields_are_encoded_as_protobuf_does() {
        let mut m = Message::default();
        m.varint(0);
        m.varint(1);
        m.varint(300);
        m.varint(u64::MAX);
        assert_eq!(
            m.0,
            [0, 1, 0xac, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
        let mut m = Message::default();
        m.uint(1, 150);
        m.uint(2, 0); // the default: left out
        m.bytes(6, b"ab");
        m.packed(2, [3, 270]);
        m.int(3, -1);
        let mut want = vec![
            0x08, 0x96, 0x01, 0x32, 2, b'a', b'b', 0x12, 3, 3, 0x8e, 0x02, 0x18,
        ];
        want.extend([0xff; 9]);
        want.push(0x01);
        assert_eq!(m.0, want);
    }

    #[test]
    fn strings_start_with_the_empty_one() {
        let mut s = Strings::new();
        assert_eq!(s.id(""), 0);
        assert_eq!(s.id("bytes"), 1);
        assert_eq!(s.id("count"), 2);
        assert_eq!(s.id("bytes"), 1);
        assert_eq!(s.table, vec!["", "bytes", "count"]);
    }
}
