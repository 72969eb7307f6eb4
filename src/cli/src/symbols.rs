//! Symbolisation of sampled pcs, done by the command from the files the `M` lines name (the
//! profiled process only writes addresses).
//!
//! A pc is first placed in its mapping, which gives its file offset (`pc - start + offset`); the
//! ELF's `PT_LOAD` program headers turn that into the address the file's DWARF and symbol tables
//! speak of. DWARF gives the function (with the frames inlined into it), file and line; without
//! it the nearest preceding function symbol of `.symtab`, then `.dynsym`, gives the name (a
//! symbol with a size must contain the address); without either, the frame is named
//! `basename+0xOFFSET`. Return addresses point after their call, so they are looked up one byte
//! before. Separate debug files (`/usr/lib/debug/.build-id/...`, `.gnu_debuglink`) are read when
//! the file itself has no DWARF. Each file is read once.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use addr2line::gimli;
use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol, ObjectSymbolTable, SymbolKind};

use crate::profile::Mapping;

/// DWARF sections copied out of the file, so that the file's bytes can go once it is read.
type Reader = gimli::EndianRcSlice<gimli::RunTimeEndian>;

/// One function frame at a pc: several for one pc when functions were inlined into others.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Frame {
    /// Demangled.
    pub function: String,
    pub file: Option<String>,
    pub line: Option<u32>,
}

impl Frame {
    pub fn named(function: String) -> Frame {
        Frame {
            function,
            file: None,
            line: None,
        }
    }

    /// `function (file:line)`, or as much of it as is known.
    pub fn describe(&self) -> String {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => format!("{} ({file}:{line})", self.function),
            (Some(file), None) => format!("{} ({file})", self.function),
            _ => self.function.clone(),
        }
    }
}

/// What one pc of a stack is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub pc: u64,
    /// Index into `Profile::mappings`; `None` for a pc in no mapping.
    pub mapping: Option<usize>,
    /// The mapped file's name without its directory; empty without a mapping.
    pub object: String,
    /// Innermost (the most deeply inlined) first; never empty.
    pub frames: Vec<Frame>,
}

/// A function symbol of a symbol table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Symbol {
    address: u64,
    /// 0 when the table does not say.
    size: u64,
    /// As the table has it (mangled).
    name: String,
}

/// A `PT_LOAD` program header: file bytes `offset..offset + size` are mapped at `address`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    offset: u64,
    size: u64,
    address: u64,
}

/// What is kept of one ELF file.
struct ObjectFile {
    segments: Vec<Segment>,
    /// Sorted by address, one per address.
    symtab: Vec<Symbol>,
    dynsym: Vec<Symbol>,
    dwarf: Option<addr2line::Context<Reader>>,
}

/// Symbolises pcs, reading each file once.
pub struct Symbolizer {
    /// By path; `None` for a file that could not be read (warned about once).
    files: HashMap<String, Option<ObjectFile>>,
    /// Files that could not be read, with why: one warning names them all.
    unreadable: Vec<String>,
    /// Pcs in no mapping.
    unmapped: usize,
    /// Whether DWARF is read (off in tests of the symbol tables).
    use_dwarf: bool,
}

impl Default for Symbolizer {
    fn default() -> Self {
        Symbolizer::new()
    }
}

impl Symbolizer {
    pub fn new() -> Symbolizer {
        Symbolizer {
            files: HashMap::new(),
            unreadable: Vec::new(),
            unmapped: 0,
            use_dwarf: true,
        }
    }

    /// A symboliser that reads only symbol tables, as for a file without DWARF.
    #[cfg(test)]
    pub fn without_dwarf() -> Symbolizer {
        Symbolizer {
            use_dwarf: false,
            ..Symbolizer::new()
        }
    }

    /// What is known of `pc`; `return_address` for every frame but a stack's innermost.
    pub fn locate(&mut self, mappings: &[Mapping], pc: u64, return_address: bool) -> Location {
        let Some(index) = mapping_of(mappings, pc) else {
            self.unmapped += 1;
            return Location {
                pc,
                mapping: None,
                object: String::new(),
                frames: vec![Frame::named(format!("0x{pc:x}"))],
            };
        };
        let mapping = &mappings[index];
        let object = basename(&mapping.path).to_string();
        let offset = (pc - mapping.start).wrapping_add(mapping.offset);
        let probe = if return_address {
            offset.saturating_sub(1)
        } else {
            offset
        };
        let frames = self
            .file(&mapping.path)
            .and_then(|file| file.frames(probe))
            .unwrap_or_else(|| vec![Frame::named(format!("{object}+0x{offset:x}"))]);
        Location {
            pc,
            mapping: Some(index),
            object,
            frames,
        }
    }

    /// The warnings so far: files that could not be read, pcs outside every mapping.
    pub fn take_warnings(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        let unreadable = std::mem::take(&mut self.unreadable);
        match unreadable.len() {
            0 => {}
            1 => out.push(format!(
                "cannot read symbols from {}; its frames are shown as FILE+0xOFFSET",
                unreadable[0]
            )),
            n => out.push(format!(
                "cannot read symbols from {n} files; their frames are shown as FILE+0xOFFSET: {}",
                unreadable.join(", ")
            )),
        }
        if self.unmapped > 0 {
            out.push(format!(
                "{} pc{} of the stacks {} in no mapping (M line); shown as addresses",
                self.unmapped,
                if self.unmapped == 1 { "" } else { "s" },
                if self.unmapped == 1 { "is" } else { "are" }
            ));
            self.unmapped = 0;
        }
        out
    }

    /// The file at `path`, read at its first use.
    fn file(&mut self, path: &str) -> Option<&ObjectFile> {
        if !self.files.contains_key(path) {
            let loaded = if path.starts_with('[') {
                // [vdso] and the like: in the process's memory only, no file to read.
                None
            } else {
                match ObjectFile::read(Path::new(path), self.use_dwarf) {
                    Ok(file) => Some(file),
                    Err(why) => {
                        self.unreadable.push(format!("{path} ({why})"));
                        None
                    }
                }
            };
            self.files.insert(path.to_string(), loaded);
        }
        self.files.get(path).and_then(Option::as_ref)
    }
}

/// The mapping that holds `pc`: the one with the highest start at or below it, if it reaches it.
fn mapping_of(mappings: &[Mapping], pc: u64) -> Option<usize> {
    let after = mappings.partition_point(|m| m.start <= pc);
    let index = after.checked_sub(1)?;
    (pc < mappings[index].end).then_some(index)
}

pub fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

impl ObjectFile {
    fn read(path: &Path, use_dwarf: bool) -> Result<ObjectFile, String> {
        let data = std::fs::read(path).map_err(|e| crate::run::io_text(&e))?;
        let file = object::File::parse(&*data).map_err(|e| format!("not an object file ({e})"))?;
        let segments: Vec<Segment> = file
            .segments()
            .map(|s| {
                let (offset, size) = s.file_range();
                Segment {
                    offset,
                    size,
                    address: s.address(),
                }
            })
            .collect();
        if segments.is_empty() {
            return Err("no loadable segments".to_string());
        }
        let mut symtab = function_symbols(file.symbol_table());
        let dynsym = function_symbols(file.dynamic_symbol_table());
        let mut dwarf = None;
        if use_dwarf {
            if file.section_by_name(".debug_info").is_some() {
                dwarf = dwarf_of(&file);
            } else if let Some(debug) = debug_file_data(path, &file) {
                if let Ok(debug_file) = object::File::parse(&*debug) {
                    dwarf = dwarf_of(&debug_file);
                    if symtab.is_empty() {
                        symtab = function_symbols(debug_file.symbol_table());
                    }
                }
            }
        }
        Ok(ObjectFile {
            segments,
            symtab,
            dynsym,
            dwarf,
        })
    }

    /// The address a file offset is loaded at, through the program header that maps it.
    fn address_of(&self, offset: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|s| offset >= s.offset && offset - s.offset < s.size)
            .map(|s| s.address + (offset - s.offset))
    }

    /// The frames at file offset `offset`, or `None` when nothing names it.
    fn frames(&self, offset: u64) -> Option<Vec<Frame>> {
        let address = self.address_of(offset)?;
        let symbol = || {
            symbol_at(&self.symtab, address)
                .or_else(|| symbol_at(&self.dynsym, address))
                .map(|s| demangle(&s.name))
        };
        let mut frames = self
            .dwarf
            .as_ref()
            .map(|ctx| dwarf_frames(ctx, address))
            .unwrap_or_default();
        match frames.last_mut() {
            // DWARF with lines but no function: the symbol names the (outermost) function.
            Some(outer) if outer.function.is_empty() => {
                outer.function = symbol().unwrap_or_else(|| "??".to_string());
            }
            Some(_) => {}
            None => frames.push(Frame::named(symbol()?)),
        }
        for frame in &mut frames {
            if frame.function.is_empty() {
                frame.function = "??".to_string();
            }
        }
        Some(frames)
    }
}

/// A table's function symbols, sorted by address, the best name kept where several share one.
fn function_symbols<'data, T: ObjectSymbolTable<'data>>(table: Option<T>) -> Vec<Symbol> {
    let Some(table) = table else {
        return Vec::new();
    };
    let mut ranked: Vec<(u64, (bool, bool, usize), Symbol)> = table
        .symbols()
        .filter(|s| s.kind() == SymbolKind::Text && s.is_definition() && s.address() != 0)
        .filter_map(|s| {
            let name = s.name().ok().filter(|n| !n.is_empty())?;
            // Prefer a symbol with a size, then a global one, then fewer leading underscores
            // (getpid over __getpid).
            let rank = (
                s.size() == 0,
                !s.is_global(),
                name.bytes().take_while(|&b| b == b'_').count(),
            );
            Some((
                s.address(),
                rank,
                Symbol {
                    address: s.address(),
                    size: s.size(),
                    name: name.to_string(),
                },
            ))
        })
        .collect();
    ranked.sort_by(|a, b| (a.0, a.1, &a.2.name).cmp(&(b.0, b.1, &b.2.name)));
    ranked.dedup_by_key(|r| r.0);
    ranked.into_iter().map(|r| r.2).collect()
}

/// The function symbol at `address`: the nearest at or before it, which must reach it if it has
/// a size (an address past a sized symbol is in a function the table does not name).
fn symbol_at(symbols: &[Symbol], address: u64) -> Option<&Symbol> {
    let after = symbols.partition_point(|s| s.address <= address);
    let symbol = &symbols[after.checked_sub(1)?];
    (symbol.size == 0 || address - symbol.address < symbol.size).then_some(symbol)
}

/// A symbol's name for people: Rust and C++ names demangled (Rust's without their hash).
pub fn demangle(name: &str) -> String {
    addr2line::demangle_auto(name.into(), None).into_owned()
}

/// The file's DWARF, if it has any that parses.
fn dwarf_of(file: &object::File<'_>) -> Option<addr2line::Context<Reader>> {
    file.section_by_name(".debug_info")?;
    let endian = if file.is_little_endian() {
        gimli::RunTimeEndian::Little
    } else {
        gimli::RunTimeEndian::Big
    };
    let load = |id: gimli::SectionId| -> Result<Reader, gimli::Error> {
        let bytes: Rc<[u8]> = match file
            .section_by_name(id.name())
            .and_then(|s| s.uncompressed_data().ok())
        {
            Some(data) => Rc::from(&*data),
            None => Rc::from(&[][..]),
        };
        Ok(gimli::EndianRcSlice::new(bytes, endian))
    };
    let dwarf = gimli::Dwarf::load(load).ok()?;
    addr2line::Context::from_dwarf(dwarf).ok()
}

/// DWARF's frames at `address`, innermost first; a frame whose function is unknown has an
/// empty name.
fn dwarf_frames(ctx: &addr2line::Context<Reader>, address: u64) -> Vec<Frame> {
    let mut out = Vec::new();
    // Split DWARF (.dwo files) is not looked for: such frames come from the symbol tables.
    let Ok(mut frames) = ctx.find_frames(address).skip_all_loads() else {
        return out;
    };
    while let Ok(Some(frame)) = frames.next() {
        let function = frame
            .function
            .as_ref()
            .and_then(|f| f.demangle().ok())
            .map(|name| {
                // Languages addr2line does not demangle for (C++17 and later) keep their mangled
                // names: try again by the name's form.
                if name.starts_with("_Z") || name.starts_with("_R") {
                    demangle(&name)
                } else {
                    name.into_owned()
                }
            })
            .unwrap_or_default();
        let (file, line) = frame
            .location
            .map_or((None, None), |l| (l.file.map(str::to_string), l.line));
        out.push(Frame {
            function,
            file,
            line,
        });
    }
    out
}

/// A separate debug file for `path`, found by build id or `.gnu_debuglink`, as gdb looks.
fn debug_file_data(path: &Path, file: &object::File<'_>) -> Option<Vec<u8>> {
    let build_id = file.build_id().ok().flatten().filter(|id| id.len() >= 2);
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(id) = build_id {
        let rest: String = id[1..].iter().map(|b| format!("{b:02x}")).collect();
        candidates.push(PathBuf::from(format!(
            "/usr/lib/debug/.build-id/{:02x}/{rest}.debug",
            id[0]
        )));
    }
    if let Ok(Some((name, _crc))) = file.gnu_debuglink() {
        let name = Path::new(OsStr::from_bytes(name));
        let dir = path.parent().unwrap_or(Path::new("/"));
        candidates.push(dir.join(name));
        candidates.push(dir.join(".debug").join(name));
        if let Ok(relative) = dir.strip_prefix("/") {
            candidates.push(Path::new("/usr/lib/debug").join(relative).join(name));
        }
    }
    candidates
        .into_iter()
        .filter(|c| c != path)
        .filter_map(|c| std::fs::read(c).ok())
        .find(|data| {
            object::File::parse(&**data).is_ok_and(|debug| {
                debug.section_by_name(".debug_info").is_some()
                    && (build_id.is_none() || debug.build_id().ok().flatten() == build_id)
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn marker_function_for_symbols(x: u64) -> u64 {
        std::hint::black_box(x).wrapping_mul(31).rotate_left(7)
    }

    /// This process's executable mappings, as the library writes them.
    fn own_mappings() -> Vec<Mapping> {
        let maps = std::fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
        let mut out: Vec<Mapping> = maps
            .lines()
            .filter_map(|l| {
                let mut f = l.split_ascii_whitespace();
                let (range, perms, offset) = (f.next()?, f.next()?, f.next()?);
                let path = f.nth(2)?;
                if !perms.contains('x') || !path.starts_with('/') {
                    return None;
                }
                let (start, end) = range.split_once('-')?;
                Some(Mapping {
                    start: u64::from_str_radix(start, 16).ok()?,
                    end: u64::from_str_radix(end, 16).ok()?,
                    offset: u64::from_str_radix(offset, 16).ok()?,
                    path: path.to_string(),
                })
            })
            .collect();
        out.sort_by_key(|m| m.start);
        out
    }

    #[test]
    fn functions_of_this_binary_are_named() {
        let mappings = own_mappings();
        let pc = marker_function_for_symbols as *const () as usize as u64;
        assert_eq!(marker_function_for_symbols(1), 31 << 7);

        let mut s = Symbolizer::new();
        let loc = s.locate(&mappings, pc, false);
        assert!(s.take_warnings().is_empty());
        assert!(loc.mapping.is_some());
        let outer = loc.frames.last().unwrap();
        assert!(
            outer
                .function
                .ends_with("symbols::tests::marker_function_for_symbols"),
            "{loc:?}"
        );
        // The release profile keeps line tables: DWARF gives the file and line.
        assert!(
            outer
                .file
                .as_deref()
                .is_some_and(|f| f.ends_with("symbols.rs")),
            "{loc:?}"
        );
        assert!(outer.line.is_some(), "{loc:?}");
        // A return address just after the function's first byte is looked up one byte before.
        let loc = s.locate(&mappings, pc + 1, true);
        assert!(
            loc.frames
                .last()
                .unwrap()
                .function
                .ends_with("marker_function_for_symbols"),
            "{loc:?}"
        );

        // From the symbol table alone, demangled without its hash.
        let mut s = Symbolizer::without_dwarf();
        let loc = s.locate(&mappings, pc + 4, false);
        assert_eq!(loc.frames.len(), 1, "{loc:?}");
        assert!(
            loc.frames[0]
                .function
                .ends_with("symbols::tests::marker_function_for_symbols"),
            "{loc:?}"
        );
        assert_eq!(loc.frames[0].file, None);
    }

    extern "C" {
        fn getpid() -> i32;
    }

    #[test]
    fn a_c_library_without_symtab_is_read_from_dynsym() {
        let mappings = own_mappings();
        let pc = getpid as *const () as usize as u64;
        let mut s = Symbolizer::without_dwarf();
        let loc = s.locate(&mappings, pc, false);
        assert!(s.take_warnings().is_empty());
        assert!(loc.object.starts_with("libc"), "{loc:?}");
        assert!(loc.frames[0].function.contains("getpid"), "{loc:?}");
    }

    #[test]
    fn unreadable_files_and_unmapped_pcs_degrade_with_one_warning() {
        let mappings = vec![
            Mapping {
                start: 0x1000,
                end: 0x3000,
                offset: 0x2000,
                path: "/nonexistent/dir/libgone.so".to_string(),
            },
            Mapping {
                start: 0x5000,
                end: 0x6000,
                offset: 0,
                path: "[vdso]".to_string(),
            },
        ];
        let mut s = Symbolizer::new();
        let a = s.locate(&mappings, 0x1010, false);
        assert_eq!(
            a.frames,
            vec![Frame::named("libgone.so+0x2010".to_string())]
        );
        assert_eq!(a.object, "libgone.so");
        // A return address is named by its own offset, though looked up one byte before.
        let b = s.locate(&mappings, 0x1020, true);
        assert_eq!(b.frames[0].function, "libgone.so+0x2020");
        assert_eq!(
            s.locate(&mappings, 0x5004, false).frames[0].function,
            "[vdso]+0x4"
        );
        let c = s.locate(&mappings, 0x3000, true);
        assert_eq!(c.mapping, None);
        assert_eq!(c.frames[0].function, "0x3000");
        let w = s.take_warnings();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].starts_with("cannot read symbols from /nonexistent/dir/libgone.so ("),
            "{w:?}"
        );
        assert!(
            w[1].starts_with("1 pc of the stacks is in no mapping"),
            "{w:?}"
        );
    }

    #[test]
    fn symbols_are_found_by_their_extent() {
        let sym = |address, size, name: &str| Symbol {
            address,
            size,
            name: name.to_string(),
        };
        let table = vec![
            sym(0x100, 0x10, "a"),
            sym(0x200, 0, "b"),
            sym(0x300, 4, "c"),
        ];
        assert_eq!(symbol_at(&table, 0xff), None);
        assert_eq!(symbol_at(&table, 0x100).unwrap().name, "a");
        assert_eq!(symbol_at(&table, 0x10f).unwrap().name, "a");
        assert_eq!(symbol_at(&table, 0x110), None);
        // Without a size, the nearest preceding symbol.
        assert_eq!(symbol_at(&table, 0x2ff).unwrap().name, "b");
        assert_eq!(symbol_at(&table, 0x304), None);
        assert_eq!(mapping_of(&[], 5), None);
    }

    #[test]
    fn names_are_demangled() {
        assert_eq!(
            demangle("_ZN4core3ptr13drop_in_place17h0123456789abcdefE"),
            "core::ptr::drop_in_place"
        );
        assert_eq!(demangle("_ZN3foo3barEv"), "foo::bar()");
        assert_eq!(demangle("malloc"), "malloc");
    }
}
