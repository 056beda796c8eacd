//! Do two sets of globs match a common path? An exact decision, with a witness path.
//!
//! A [`PatternSet`] is a directory prefix (a task's cwd, root-relative) and patterns with exactly
//! the semantics of [`crate::files::Patterns`]: globset with `literal_separator` and
//! `backslash_escape`, a leading `!` excludes (and excludes everything below), a pattern without
//! glob characters names a file or a whole directory (it also covers `pattern/**`).
//! [`witness`] answers whether some path is matched by both sets, and names the shortest one.
//!
//! How: each side's include globs and exclude globs are compiled to two DFAs, from the very
//! regular expressions globset matches with (`Glob::regex`, same syntax options), so the decision
//! cannot drift from what the engine's matcher does. A breadth-first search then walks the
//! product of both sides' DFAs (preceded by each side's literal prefix), of an automaton for
//! well-formed relative paths (no empty, `.` or `..` components, no NUL, no leading or trailing
//! `/`) and of a UTF-8 validator, over an alphabet of byte classes (the common refinement of
//! every automaton's classes, one representative byte each). A product state accepts when both
//! includes match, neither exclude does, and the path is well formed.
//!
//! Before any automaton is built, two exact pre-checks tell most pairs apart: the sets' walk
//! roots (`src/**` and `dist/**` never meet) and the literal suffixes their includes require
//! (`**/*.js` and `**/*.css` never end alike).
//!
//! **Invariants:** the answer is exact over the paths a walk can produce (UTF-8, well formed);
//! every witness is matched by both sets under [`crate::files::Patterns::matches`] (the property
//! test checks this against brute force); the search is bounded ([`MAX_STATES`] per pair, a
//! caller's [`Budget`] over a series of pairs, DFA size limits) and says so
//! ([`OverlapError::TooComplex`]) rather than guessing.
//!
//! The module knows nothing of tasks: callers decide what must not overlap (two tasks' outputs,
//! a task's outputs and its inputs, outputs and protected paths).

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::OnceLock;

use regex_automata::hybrid::LazyStateID;
use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::nfa::thompson;
use regex_automata::util::{start, syntax};
use regex_automata::{Anchored, MatchKind};

use crate::files::{self, PatternError};

/// Bound on the product states one comparison visits.
pub const MAX_STATES: usize = 200_000;

/// Bound on each DFA (and on determinizing it), in bytes. Real pattern sets need kilobytes;
/// `*a?????????????????` needs 2^18 states.
const DFA_SIZE_LIMIT: usize = 1 << 20;

#[derive(Clone, Debug, thiserror::Error)]
pub enum OverlapError {
    #[error(transparent)]
    Pattern(#[from] PatternError),
    #[error("the patterns `{patterns}` are too complex to compare: {reason}")]
    TooComplex { patterns: String, reason: String },
}

/// One side of a comparison: patterns relative to a directory prefix. Its automata are built
/// on the first comparison that needs them (most pairs are told apart by their walk roots).
pub struct PatternSet {
    /// `dir/`, or empty for the root.
    prefix: Vec<u8>,
    /// The include (exclude) globs, split from their `!` and normalized; `/**` added where
    /// `files::Patterns` adds it. Compiled only when a comparison needs the automata.
    include: Vec<String>,
    exclude: Vec<String>,
    sources: Vec<String>,
    /// Root-relative walk root of each include pattern: every path the set matches is one of
    /// these or below one (a cheap, exact pre-check before any search).
    roots: Vec<String>,
    /// The literal text every path matched by each include glob ends with (`.js` for
    /// `**/*.js`, empty for `dist/**`): two sets whose includes' suffixes are pairwise not
    /// suffixes of one another match no common path (the other cheap, exact pre-check).
    suffixes: Vec<String>,
    /// Boxed: built for few sets, and a set is moved around while it is not (the automata
    /// inline made each set kilobytes that a plan copied for every task).
    automata: OnceLock<Result<Box<Automata>, OverlapError>>,
}

/// A set's compiled side of the product.
struct Automata {
    prefix: Vec<u8>,
    include: Dfa,
    exclude: Option<Dfa>,
    /// Per byte: what distinguishes it for this set, packed; see [`Automata::signature`].
    signatures: Vec<u32>,
}

/// One side's automaton: a lazy DFA (regex-automata's `hybrid`, which globset's own regexes
/// already link), determinized only as far as the search goes. Deliberately not a fully built
/// (`dense`) DFA: enabling that builder in the shared regex-automata makes every regex globset
/// compiles (every task's globs, on every run) build a full DFA too, which doubled the cost of
/// compiling globs in a no-op build.
struct Dfa {
    dfa: DFA,
    /// The states found so far. Its capacity bounds the automaton; it is never cleared (that would
    /// invalidate the states the search holds): needing more is "too complex".
    cache: RefCell<Cache>,
    start: LazyStateID,
}

/// A lazy DFA needed more states than [`DFA_SIZE_LIMIT`] holds.
#[derive(Debug)]
struct Overflow;

impl Dfa {
    fn build(regexes: &[String], sources: &[String]) -> Result<Option<Dfa>, OverlapError> {
        if regexes.is_empty() {
            return Ok(None);
        }
        let too_complex = |reason: String| OverlapError::TooComplex {
            patterns: shortened(&sources.join(", ")),
            reason,
        };
        // The syntax options of globset's own matcher (`new_regex` in globset's lib.rs).
        let dfa = DFA::builder()
            .configure(
                DFA::config()
                    .match_kind(MatchKind::All)
                    .cache_capacity(DFA_SIZE_LIMIT)
                    .minimum_cache_clear_count(Some(0)),
            )
            .syntax(syntax::Config::new().utf8(false).dot_matches_new_line(true))
            .thompson(
                thompson::Config::new()
                    .utf8(false)
                    .nfa_size_limit(Some(DFA_SIZE_LIMIT)),
            )
            .build_many(regexes)
            .map_err(|err| too_complex(err.to_string()))?;
        let mut cache = dfa.create_cache();
        let start = dfa
            .start_state(&mut cache, &start::Config::new().anchored(Anchored::Yes))
            .map_err(|err| too_complex(err.to_string()))?;
        Ok(Some(Dfa {
            dfa,
            cache: RefCell::new(cache),
            start,
        }))
    }

    fn next(&self, state: LazyStateID, byte: u8) -> Result<LazyStateID, Overflow> {
        self.dfa
            .next_state(&mut self.cache.borrow_mut(), state, byte)
            .map_err(|_| Overflow)
    }

    /// Whether the input read so far (ending here) is matched.
    fn matches_at_end(&self, state: LazyStateID) -> Result<bool, Overflow> {
        self.dfa
            .next_eoi_state(&mut self.cache.borrow_mut(), state)
            .map(|end| end.is_match())
            .map_err(|_| Overflow)
    }

    fn class(&self, byte: u8) -> u8 {
        self.dfa.byte_classes().get(byte)
    }
}

/// The regular expression globset matches `pattern` with (compiled as `files` compiles it).
fn regex(pattern: &str) -> Result<String, PatternError> {
    files::compile(pattern).map(|glob| glob.regex().to_string())
}

impl PatternSet {
    /// `patterns` (as a task declares them) relative to `prefix`, a root-relative directory
    /// (`""` for the root). The lexical rules are checked here; the glob syntax when the
    /// automata are built ([`PatternSet::prepare`], or the first comparison that needs them),
    /// since most sets are told apart by their walk roots and never compiled.
    pub fn new(prefix: &str, patterns: &[String]) -> Result<PatternSet, OverlapError> {
        let mut include = Vec::new();
        let mut exclude = Vec::new();
        for raw in patterns {
            // The lexical rules now; the glob syntax when (if ever) the automata are built.
            let (negated, pattern) = files::Patterns::normalize(raw)?;
            let target = if negated { &mut exclude } else { &mut include };
            target.push(pattern.to_string());
            if negated || files::is_literal(pattern) {
                target.push(format!("{pattern}/**"));
            }
        }
        let prefix = prefix.trim_matches('/');
        let roots = patterns
            .iter()
            .filter_map(|raw| walk_root(raw))
            .map(|root| match (prefix.is_empty(), root.is_empty()) {
                (true, _) => root,
                (false, true) => prefix.to_string(),
                (false, false) => format!("{prefix}/{root}"),
            })
            .collect();
        let suffixes = include.iter().map(|glob| literal_suffix(glob)).collect();
        Ok(PatternSet {
            prefix: if prefix.is_empty() {
                Vec::new()
            } else {
                format!("{prefix}/").into_bytes()
            },
            include,
            exclude,
            sources: patterns.to_vec(),
            roots,
            suffixes,
            automata: OnceLock::new(),
        })
    }

    /// The patterns this set was made from.
    pub fn sources(&self) -> &[String] {
        &self.sources
    }

    /// Whether some path at or below one of this set's walk roots can be at or below one of
    /// `other`'s (when not, the sets cannot overlap).
    fn roots_meet(&self, other: &PatternSet) -> bool {
        // Allocation-free: a plan compares every pair of tasks' outputs.
        let nested = |outer: &str, inner: &str| {
            outer.is_empty()
                || inner
                    .strip_prefix(outer)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        self.roots
            .iter()
            .any(|a| other.roots.iter().any(|b| nested(a, b) || nested(b, a)))
    }

    /// Whether some include of this set and some include of `other` can end alike (when not,
    /// no path ends with both required suffixes, and the sets cannot overlap).
    fn suffixes_meet(&self, other: &PatternSet) -> bool {
        self.suffixes.iter().any(|a| {
            other
                .suffixes
                .iter()
                .any(|b| a.ends_with(b.as_str()) || b.ends_with(a.as_str()))
        })
    }

    /// The automata, built once (only for a set with an include pattern).
    fn automata(&self) -> Result<&Automata, OverlapError> {
        self.automata
            .get_or_init(|| {
                let build = || -> Result<Box<Automata>, OverlapError> {
                    let regexes = |globs: &[String]| -> Result<Vec<String>, PatternError> {
                        globs.iter().map(|glob| regex(glob)).collect()
                    };
                    let include = Dfa::build(&regexes(&self.include)?, &self.sources)?
                        .expect("only sets with includes are compiled");
                    let exclude = Dfa::build(&regexes(&self.exclude)?, &self.sources)?;
                    let mut automata = Automata {
                        prefix: self.prefix.clone(),
                        include,
                        exclude,
                        signatures: Vec::new(),
                    };
                    automata.signatures =
                        (0..=255u8).map(|byte| automata.signature(byte)).collect();
                    Ok(Box::new(automata))
                };
                build()
            })
            .as_deref()
            .map_err(Clone::clone)
    }

    /// Builds this set's automata now (otherwise the first comparison that needs them does):
    /// says whether its globs compile within the size limits, and so which set a comparison's
    /// error is about. The automata are lazy: how many states a comparison needs shows only
    /// in the comparison.
    pub fn prepare(&self) -> Result<(), OverlapError> {
        if self.include.is_empty() {
            return Ok(());
        }
        self.automata().map(|_| ())
    }
}

impl Automata {
    fn start(&self) -> Side {
        Side {
            at: 0,
            include: self.include.start,
            exclude: self.exclude.as_ref().map(|d| d.start),
        }
    }

    fn step(&self, side: Side, byte: u8) -> Result<Option<Side>, Overflow> {
        let at = side.at as usize;
        if at < self.prefix.len() {
            return Ok((self.prefix[at] == byte).then_some(Side {
                at: side.at + 1,
                ..side
            }));
        }
        let next = self.include.next(side.include, byte)?;
        if next.is_dead() {
            return Ok(None);
        }
        let exclude = match (&self.exclude, side.exclude) {
            (Some(dfa), Some(state)) => Some(dfa.next(state, byte)?),
            _ => None,
        };
        Ok(Some(Side {
            at: side.at,
            include: next,
            exclude,
        }))
    }

    fn accepts(&self, side: Side) -> Result<bool, Overflow> {
        if side.at as usize != self.prefix.len() || !self.include.matches_at_end(side.include)? {
            return Ok(false);
        }
        Ok(match (&self.exclude, side.exclude) {
            (Some(dfa), Some(state)) => !dfa.matches_at_end(state)?,
            _ => true,
        })
    }

    /// What distinguishes `byte` for this set: its two DFA classes (8 bits each), and itself
    /// if the prefix has it (9 bits: 256 for "not in the prefix").
    fn signature(&self, byte: u8) -> u32 {
        let include = u32::from(self.include.class(byte));
        let exclude = self
            .exclude
            .as_ref()
            .map_or(0, |d| u32::from(d.class(byte)));
        let literal = if self.prefix.contains(&byte) {
            u32::from(byte)
        } else {
            256
        };
        include | exclude << 8 | literal << 16
    }
}

/// Where the engine's walk for an include pattern starts, relative to the pattern's prefix: its
/// longest literal directory prefix, or the whole pattern when it has no glob character (what
/// `files::expand` walks from). `None` for an exclude.
///
/// A walk never enters a directory named `.git` (or the state directory) below this root, so a
/// path with such a component is reached only when the component lies within the walk root;
/// callers protecting those directories check the root rather than every path the glob matches.
pub fn walk_root(raw: &str) -> Option<String> {
    let (negated, pattern) = files::split(raw);
    (!negated).then(|| files::walk_base(pattern))
}

/// Escapes `literal` so that it matches exactly that path (as written; not what is below it:
/// append `/**` for that).
pub fn escape(literal: &str) -> String {
    let mut out = String::with_capacity(literal.len());
    for c in literal.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | ',' | '\\' | '!') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `text` cut to about 200 characters for a message (patterns can be megabytes long).
fn shortened(text: &str) -> String {
    const MAX: usize = 200;
    if text.len() <= MAX {
        return text.to_string();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} more bytes)", &text[..end], text.len() - end)
}

/// The literal text at the end of `glob` (after its last glob character): every path it
/// matches ends with it. Empty when the glob ends with a wildcard, a class, an alternation or
/// an escape (kept simple: what it returns is always a true suffix).
fn literal_suffix(glob: &str) -> String {
    let start = glob
        .rfind(['*', '?', '[', ']', '{', '}', ',', '\\'])
        .map_or(0, |at| at + 1);
    glob[start..].to_string()
}

/// A bound on the product states a series of comparisons may visit together (a plan compares
/// every pair of tasks: without it, many patterns each just under [`MAX_STATES`] would take
/// minutes, not be refused).
pub struct Budget {
    left: std::cell::Cell<usize>,
}

/// The [`Budget`] of one plan's comparisons: ten of the largest comparisons one pair may make
/// (about two seconds of a release build); real plans need a tiny part of it, since most pairs
/// are told apart without a search. Each search costs the states it visits, and at least its
/// alphabet (the fixed work of setting it up).
pub const PLAN_STATES: usize = 10 * MAX_STATES;

impl Budget {
    pub fn new(states: usize) -> Budget {
        Budget {
            left: std::cell::Cell::new(states),
        }
    }

    /// The states not spent yet.
    pub fn left(&self) -> usize {
        self.left.get()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Side {
    /// Bytes of the prefix read so far.
    at: u32,
    include: LazyStateID,
    exclude: Option<LazyStateID>,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct State {
    a: Side,
    b: Side,
    shape: u8,
    utf8: u8,
}

/// Well-formed relative paths: components are non-empty, not `.` or `..`, without NUL.
mod shape {
    pub const COMPONENT_START: u8 = 0;
    pub const DOT: u8 = 1;
    pub const DOT_DOT: u8 = 2;
    pub const NAME: u8 = 3;

    pub fn next(state: u8, byte: u8) -> Option<u8> {
        match (state, byte) {
            (_, 0) => None,
            (NAME, b'/') => Some(COMPONENT_START),
            (_, b'/') => None,
            (COMPONENT_START, b'.') => Some(DOT),
            (DOT, b'.') => Some(DOT_DOT),
            _ => Some(NAME),
        }
    }

    pub fn accepts(state: u8) -> bool {
        state == NAME
    }

    pub fn class(byte: u8) -> u16 {
        match byte {
            0 => 0,
            b'/' => 1,
            b'.' => 2,
            _ => 3,
        }
    }
}

/// A UTF-8 validator (RFC 3629: no overlongs, surrogates or code points above U+10FFFF).
mod utf8 {
    pub const ACCEPT: u8 = 0;
    const NEED_1: u8 = 1;
    const NEED_2: u8 = 2;
    const NEED_3: u8 = 3;
    const AFTER_E0: u8 = 4;
    const AFTER_ED: u8 = 5;
    const AFTER_F0: u8 = 6;
    const AFTER_F4: u8 = 7;

    pub fn next(state: u8, byte: u8) -> Option<u8> {
        let continuation = (0x80..=0xBF).contains(&byte);
        match state {
            ACCEPT => match byte {
                0x00..=0x7F => Some(ACCEPT),
                0xC2..=0xDF => Some(NEED_1),
                0xE0 => Some(AFTER_E0),
                0xE1..=0xEC | 0xEE..=0xEF => Some(NEED_2),
                0xED => Some(AFTER_ED),
                0xF0 => Some(AFTER_F0),
                0xF1..=0xF3 => Some(NEED_3),
                0xF4 => Some(AFTER_F4),
                _ => None,
            },
            NEED_1 if continuation => Some(ACCEPT),
            NEED_2 if continuation => Some(NEED_1),
            NEED_3 if continuation => Some(NEED_2),
            AFTER_E0 if (0xA0..=0xBF).contains(&byte) => Some(NEED_1),
            AFTER_ED if (0x80..=0x9F).contains(&byte) => Some(NEED_1),
            AFTER_F0 if (0x90..=0xBF).contains(&byte) => Some(NEED_2),
            AFTER_F4 if (0x80..=0x8F).contains(&byte) => Some(NEED_2),
            _ => None,
        }
    }

    /// Bytes every state above treats alike share a class.
    pub fn class(byte: u8) -> u16 {
        match byte {
            0x00..=0x7F => 0,
            0x80..=0x8F => 1,
            0x90..=0x9F => 2,
            0xA0..=0xBF => 3,
            0xC0..=0xC1 => 4,
            0xC2..=0xDF => 5,
            0xE0 => 6,
            0xE1..=0xEC | 0xEE..=0xEF => 7,
            0xED => 8,
            0xF0 => 9,
            0xF1..=0xF3 => 10,
            0xF4 => 11,
            0xF5..=0xFF => 12,
        }
    }
}

/// Bytes in the order representatives are picked, so witnesses read well (`a` before `%`).
fn preferred_bytes() -> impl Iterator<Item = u8> {
    (b'a'..=b'z')
        .chain(b'0'..=b'9')
        .chain([b'_', b'-', b'.'])
        .chain(b'A'..=b'Z')
        .chain(0x21..=0x7E)
        .chain(0x20..=0x20)
        .chain(0x00..=0x1F)
        .chain(0x7F..=0xFF)
}

/// One representative byte per class of bytes that every automaton of the product treats alike.
fn alphabet(a: &Automata, b: &Automata) -> Vec<u8> {
    // 25 bits per set, 2 for the path shape, 4 for UTF-8: one u64 per byte.
    let mut seen: Vec<u64> = Vec::new();
    let mut alphabet = Vec::new();
    for byte in preferred_bytes() {
        let key = u64::from(a.signatures[usize::from(byte)])
            | u64::from(b.signatures[usize::from(byte)]) << 25
            | u64::from(shape::class(byte)) << 50
            | u64::from(utf8::class(byte)) << 52;
        if !seen.contains(&key) {
            seen.push(key);
            alphabet.push(byte);
        }
    }
    alphabet
}

/// The shortest path both sets match (root-relative: it includes the prefixes), or `None` when
/// no path is matched by both.
pub fn witness(a: &PatternSet, b: &PatternSet) -> Result<Option<String>, OverlapError> {
    witness_within(a, b, &Budget::new(MAX_STATES))
}

/// [`witness`], the states it visits taken from `budget`: once it is spent, every comparison
/// that needs a search is an error ([`OverlapError::TooComplex`]).
pub fn witness_within(
    a: &PatternSet,
    b: &PatternSet,
    budget: &Budget,
) -> Result<Option<String>, OverlapError> {
    if a.include.is_empty() || b.include.is_empty() || !a.roots_meet(b) || !a.suffixes_meet(b) {
        return Ok(None);
    }
    let left = budget.left.get();
    let (limit, reason) = if left < MAX_STATES {
        (
            left,
            format!(
                "the comparisons of all the outputs together need more than {PLAN_STATES} states"
            ),
        )
    } else {
        (
            MAX_STATES,
            format!("more than {MAX_STATES} states to compare"),
        )
    };
    let found = search(a, b, limit, &reason);
    let visited = match &found {
        Ok((_, visited)) => *visited,
        Err(_) => limit,
    };
    budget.left.set(left.saturating_sub(visited));
    found.map(|(path, _)| path)
}

/// The breadth-first search of [`witness`], visiting at most `limit` states (`reason` says why
/// when it gives up); also how many it visited.
fn search(
    a: &PatternSet,
    b: &PatternSet,
    limit: usize,
    reason: &str,
) -> Result<(Option<String>, usize), OverlapError> {
    let sources = || {
        shortened(&format!(
            "{} / {}",
            a.sources.join(", "),
            b.sources.join(", ")
        ))
    };
    let (a, b) = (a.automata()?, b.automata()?);
    let overflow = |_: Overflow| OverlapError::TooComplex {
        patterns: sources(),
        reason: format!("an automaton needs more than {DFA_SIZE_LIMIT} bytes"),
    };
    let alphabet = alphabet(a, b);
    let start = State {
        a: a.start(),
        b: b.start(),
        shape: shape::COMPONENT_START,
        utf8: utf8::ACCEPT,
    };
    // Breadth first: (state, parent index, byte read to reach it).
    let mut nodes: Vec<(State, usize, u8)> = vec![(start, usize::MAX, 0)];
    let mut seen: HashSet<State> = HashSet::from([start]);
    let mut next_node = 0;
    while next_node < nodes.len() {
        let index = next_node;
        next_node += 1;
        let state = nodes[index].0;
        if shape::accepts(state.shape)
            && state.utf8 == utf8::ACCEPT
            && a.accepts(state.a).map_err(overflow)?
            && b.accepts(state.b).map_err(overflow)?
        {
            let mut bytes = Vec::new();
            let mut at = index;
            while at != 0 {
                bytes.push(nodes[at].2);
                at = nodes[at].1;
            }
            bytes.reverse();
            let path = String::from_utf8(bytes).expect("the UTF-8 automaton admits only UTF-8");
            return Ok((Some(path), nodes.len() + alphabet.len()));
        }
        for &byte in &alphabet {
            let (Some(shape), Some(utf8)) =
                (shape::next(state.shape, byte), utf8::next(state.utf8, byte))
            else {
                continue;
            };
            let Some(side_a) = a.step(state.a, byte).map_err(overflow)? else {
                continue;
            };
            let Some(side_b) = b.step(state.b, byte).map_err(overflow)? else {
                continue;
            };
            let next = State {
                a: side_a,
                b: side_b,
                shape,
                utf8,
            };
            if seen.insert(next) {
                if nodes.len() >= limit {
                    return Err(OverlapError::TooComplex {
                        patterns: sources(),
                        reason: reason.to_string(),
                    });
                }
                nodes.push((next, index, byte));
            }
        }
    }
    Ok((None, nodes.len() + alphabet.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::Patterns;

    fn strings(patterns: &[&str]) -> Vec<String> {
        patterns.iter().map(|p| p.to_string()).collect()
    }

    fn set(prefix: &str, patterns: &[&str]) -> PatternSet {
        PatternSet::new(prefix, &strings(patterns)).unwrap()
    }

    /// Whether the engine's matcher matches root-relative `path` for a side.
    fn engine_matches(prefix: &str, patterns: &[&str], path: &str) -> bool {
        let relative = if prefix.is_empty() {
            Some(path)
        } else {
            path.strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix('/'))
        };
        relative
            .is_some_and(|relative| Patterns::new(&strings(patterns)).unwrap().matches(relative))
    }

    /// The witness of two sides, checked against the engine's matcher.
    fn overlap(a: (&str, &[&str]), b: (&str, &[&str])) -> Option<String> {
        let found = witness(&set(a.0, a.1), &set(b.0, b.1)).unwrap();
        let reversed = witness(&set(b.0, b.1), &set(a.0, a.1)).unwrap();
        assert_eq!(found.is_some(), reversed.is_some(), "symmetric");
        if let Some(path) = &found {
            assert!(engine_matches(a.0, a.1, path), "{path:?} matches {a:?}");
            assert!(engine_matches(b.0, b.1, path), "{path:?} matches {b:?}");
        }
        found
    }

    #[test]
    fn pairs_that_cannot_end_alike_need_no_search_and_a_budget_bounds_the_rest() {
        let spent = Budget::new(0);
        // Told apart by the suffixes their includes require: no search, nothing spent.
        for (a, b) in [
            (&["**/*.js"][..], &["**/*.css"][..]),
            (&["**/gen/*.x1", "**/*.x2"], &["**/*.x3"]),
            (&["src/**/*.min.js"], &["**/*.map"]),
        ] {
            assert_eq!(
                witness_within(&set("", a), &set("", b), &spent).unwrap(),
                None,
                "{a:?} / {b:?}"
            );
        }
        // `.js` ends `.min.js`: a search, which a spent budget refuses.
        let err =
            witness_within(&set("", &["**/*.js"]), &set("", &["**/*.min.js"]), &spent).unwrap_err();
        assert!(
            err.to_string().contains("all the outputs together"),
            "{err}"
        );
        // With a budget, the search finds the overlap; a literal (a file or a directory) has
        // no suffix of its own.
        let budget = Budget::new(PLAN_STATES);
        assert_eq!(
            overlap(("", &["**/*.js"]), ("", &["**/*.min.js"])).as_deref(),
            Some(".min.js")
        );
        assert!(
            witness_within(&set("", &["dist"]), &set("", &["**/*.css"]), &budget)
                .unwrap()
                .is_some()
        );
        // Each search spends what it visits.
        let small = Budget::new(MAX_STATES + 10);
        witness_within(&set("", &["**/a*"]), &set("", &["**/*b"]), &small).unwrap();
        assert!(small.left.get() < MAX_STATES + 10);
    }

    #[test]
    fn globset_semantics_the_decision_relies_on() {
        let matches = |pattern: &str, path: &str| engine_matches("", &[pattern], path);
        // `a/**` does not match `a` itself; a literal `a` matches `a` and everything below.
        assert!(!matches("a/**", "a"));
        assert!(matches("a/**", "a/b/c"));
        assert!(matches("a", "a") && matches("a", "a/b/c"));
        // `**/x` matches `x` at the top too; `**` alone matches everything.
        assert!(matches("**/x", "x") && matches("**/x", "a/b/x"));
        assert!(matches("**", ".git/config"));
        // Dotfiles are not special.
        assert!(matches("*", ".git") && matches("*.js", ".js"));
        // `*`, `?` and classes stay within a component; `?` is one byte, not one character.
        assert!(!matches("a*", "a/b") && !matches("a?b", "a/b") && !matches("a[!x]b", "a/b"));
        assert!(!matches("?", "é") && matches("??", "é"));
        // `**` inside a component is two `*`.
        assert!(matches("a**b", "axb") && !matches("a**b", "a/b"));
    }

    #[test]
    fn examples_from_the_issue() {
        assert_eq!(overlap(("", &["build/*.js"]), ("", &["build/*.css"])), None);
        assert_eq!(
            overlap(("", &["build/**"]), ("", &["build/app/*.js"])),
            Some("build/app/.js".into())
        );
        assert_eq!(
            overlap(("", &["dist/**", "!dist/b/**"]), ("", &["dist/b/**"])),
            None
        );
        assert_eq!(
            overlap(("", &["build/**"]), ("", &["build/**"])),
            Some("build/a".into())
        );
    }

    #[test]
    fn literals_name_directories_and_excludes_cover_below() {
        assert_eq!(
            overlap(("", &["build"]), ("", &["build/x/*.o"])),
            Some("build/x/.o".into())
        );
        assert_eq!(
            overlap(("", &["src/**", "!src/gen"]), ("", &["src/gen/a.rs"])),
            None
        );
        // `a/**` and "exactly `a`" do not meet; `**/x` meets "exactly `x`".
        assert_eq!(overlap(("", &["a/**"]), ("", &["a", "!a/**"])), None);
        assert_eq!(
            overlap(("", &["**/x"]), ("", &["x", "!x/**"])),
            Some("x".into())
        );
        assert_eq!(overlap(("", &["*"]), ("", &[".git"])), Some(".git".into()));
    }

    #[test]
    fn prefixes_are_directories() {
        assert_eq!(
            overlap(("demo", &["build/**"]), ("", &["demo/build/x"])),
            Some("demo/build/x".into())
        );
        assert_eq!(overlap(("demo", &["**"]), ("", &["demo2/x"])), None);
        assert_eq!(
            overlap(("demo", &["**"]), ("", &["demo"])),
            Some("demo/a".into())
        );
        assert_eq!(
            overlap(("a/b", &["*"]), ("a", &["*"])),
            None,
            "depth differs"
        );
        // A prefix is literal: glob characters in it match only themselves.
        assert_eq!(overlap(("d[x]", &["*"]), ("", &["dx/*"])), None);
        let below = format!("{}/**", escape("d[x]"));
        assert_eq!(
            overlap(("d[x]", &["*"]), ("", &[&below])),
            Some("d[x]/a".into())
        );
        // An escaped literal is not a plain literal: it names the path only.
        assert_eq!(overlap(("d[x]", &["*"]), ("", &[&escape("d[x]")])), None);
    }

    #[test]
    fn classes_braces_escapes_and_unicode() {
        assert_eq!(
            overlap(("", &["{a,b}/*.js"]), ("", &["b/x.js"])),
            Some("b/x.js".into())
        );
        assert_eq!(overlap(("", &["{a,b}/*.js"]), ("", &["c/**"])), None);
        assert_eq!(overlap(("", &["[!a]"]), ("", &["a"])), None);
        assert_eq!(overlap(("", &["[a-c]x"]), ("", &["?x"])), Some("ax".into()));
        assert_eq!(overlap(("", &["\\*"]), ("", &["x"])), None);
        assert_eq!(
            overlap(("", &["*"]), ("", &[&escape("*")])),
            Some("*".into())
        );
        assert_eq!(overlap(("", &["?"]), ("", &["é"])), None);
        assert_eq!(overlap(("", &["??"]), ("", &["é"])), Some("é".into()));
        // Wildcards alone never produce invalid UTF-8, `.` or `..` components, or NUL.
        let path = overlap(("", &["???/*"]), ("", &["*/?"])).unwrap();
        assert_eq!(path, "aaa/a");
    }

    #[test]
    fn empty_sides_and_only_excludes_match_nothing() {
        assert_eq!(overlap(("", &[]), ("", &["**"])), None);
        assert_eq!(overlap(("", &["!a"]), ("", &["**"])), None);
        assert_eq!(overlap(("", &["**", "!**"]), ("", &["**"])), None);
    }

    #[test]
    fn walk_roots_are_literal_prefixes() {
        assert_eq!(walk_root("build/**").as_deref(), Some("build"));
        assert_eq!(walk_root("./build/x/*.js").as_deref(), Some("build/x"));
        assert_eq!(walk_root(".git").as_deref(), Some(".git"));
        assert_eq!(
            walk_root("a/.git/hooks/pre-*").as_deref(),
            Some("a/.git/hooks")
        );
        assert_eq!(walk_root("**").as_deref(), Some(""));
        assert_eq!(walk_root("{.git,b}/**").as_deref(), Some(""));
        assert_eq!(walk_root("!build"), None);
    }

    #[test]
    fn the_search_is_bounded() {
        // `*a` then 20 single characters: a DFA of 2^20 states, past the size limit. Lazy
        // automata cannot tell before a search how far it will go: the search says so.
        let hard = format!("*a{}", "?".repeat(20));
        let hard = PatternSet::new("", &[hard]).unwrap();
        assert!(hard.prepare().is_ok());
        assert!(matches!(
            witness(&hard, &set("", &["**"])),
            Err(OverlapError::TooComplex { .. })
        ));
        assert!(set("", &["build/**"]).prepare().is_ok());
    }

    #[test]
    fn bad_patterns_are_errors() {
        assert!(matches!(
            PatternSet::new("", &strings(&["../x"])),
            Err(OverlapError::Pattern(_))
        ));
        let unclosed = PatternSet::new("", &strings(&["a[b"])).unwrap();
        assert!(matches!(unclosed.prepare(), Err(OverlapError::Pattern(_))));
        let other = PatternSet::new("", &strings(&["**"])).unwrap();
        assert!(matches!(
            witness(&unclosed, &other),
            Err(OverlapError::Pattern(_))
        ));
    }

    mod property {
        use super::*;
        use proptest::prelude::*;

        const PREFIXES: [&str; 3] = ["", "a", "a/b"];
        const COMPONENTS: [&str; 14] = [
            "a", "b", "ab", ".a", "*", "?", "**", "a*", "*b", "[ab]", "[!a]", "{a,b}", "*.a", "a?",
        ];
        /// Names the universe of paths is built from: each component above matches some.
        const NAMES: [&str; 7] = ["a", "b", "ab", "ba", ".a", "b.a", "c"];

        fn pattern() -> impl Strategy<Value = String> {
            (
                proptest::bool::weighted(0.25),
                proptest::collection::vec(proptest::sample::select(&COMPONENTS[..]), 1..=3),
            )
                .prop_map(|(negated, components)| {
                    format!("{}{}", if negated { "!" } else { "" }, components.join("/"))
                })
        }

        fn side() -> impl Strategy<Value = (&'static str, Vec<String>)> {
            (
                proptest::sample::select(&PREFIXES[..]),
                proptest::collection::vec(pattern(), 1..=3),
            )
        }

        fn universe() -> Vec<String> {
            let mut paths: Vec<String> = NAMES.iter().map(|n| n.to_string()).collect();
            let mut last = paths.clone();
            for _ in 1..4 {
                last = last
                    .iter()
                    .flat_map(|path| NAMES.iter().map(move |name| format!("{path}/{name}")))
                    .collect();
                paths.extend(last.iter().cloned());
            }
            paths
        }

        fn matches(prefix: &str, patterns: &Patterns, path: &str) -> bool {
            let relative = if prefix.is_empty() {
                Some(path)
            } else {
                path.strip_prefix(prefix)
                    .and_then(|rest| rest.strip_prefix('/'))
            };
            relative.is_some_and(|relative| patterns.matches(relative))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(400))]
            #[test]
            fn agrees_with_brute_force((prefix_a, a) in side(), (prefix_b, b) in side()) {
                let engine_a = Patterns::new(&a).unwrap();
                let engine_b = Patterns::new(&b).unwrap();
                let found = witness(
                    &PatternSet::new(prefix_a, &a).unwrap(),
                    &PatternSet::new(prefix_b, &b).unwrap(),
                ).unwrap();
                let common = universe().into_iter().find(|path| {
                    matches(prefix_a, &engine_a, path) && matches(prefix_b, &engine_b, path)
                });
                if let Some(path) = &found {
                    prop_assert!(
                        path.split('/').all(|c| !c.is_empty() && c != "." && c != ".."),
                        "{path:?} is not a well-formed relative path"
                    );
                    prop_assert!(matches(prefix_a, &engine_a, path), "{path:?} not matched by {a:?}");
                    prop_assert!(matches(prefix_b, &engine_b, path), "{path:?} not matched by {b:?}");
                } else {
                    prop_assert!(common.is_none(), "missed {common:?}");
                }
            }
        }
    }
}
