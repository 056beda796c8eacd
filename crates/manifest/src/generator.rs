//! How `per_install_generated` secrets are generated: the generator types, the named character
//! sets, literal sets and their entropy, and the defaults, for the pipeline (which writes
//! generators) and the runtime (which runs them) alike.
//!
//! A generator (`{"type", "length", "charset"}`, every field optional) resolves to a
//! [`GeneratorSpec`] with its defaults applied: `random`, 32 characters (a `uuid` is 36),
//! charset `alnum`. Rules, each an error naming the field:
//! - `length` is 8..=4096; a `uuid` is exactly 36 (`length` may be left out);
//! - `charset` applies to `random` only;
//! - a charset is a name of [`NamedCharset`] (aliases included) or a literal set of
//!   printable, non-space characters, each written once. A string that repeats a character,
//!   or that looks like a name (ASCII letters, digits, `_`) and is, ignoring case, within two
//!   edits of a known name (and closer to it than half its own length), is an unknown name:
//!   an error with "did you mean" — never silently read as the letters it is spelled with
//!   (`alnum_sybmols` is not the set `{a, b, l, …}`, nor `HEX` the set `{E, H, X}`);
//! - a literal set has at least [`MIN_LITERAL_CHARS`] distinct characters, or `length`
//!   gives at least [`MIN_ENTROPY_BITS`] bits (`length × log2(distinct characters)`).
//!
//! **Invariant:** what [`GeneratorSpec::alphabet`] returns is exactly the set a value is drawn
//! from, so the entropy this module computes is the entropy the runtime delivers.

use crate::{Generator, GeneratorType};
use serde::{Serialize, Serializer};
use std::collections::BTreeSet;
use std::fmt;

/// Shortest and longest `length`.
pub const LENGTH_RANGE: std::ops::RangeInclusive<u32> = 8..=4096;
/// Default `length` (`uuid`: 36).
pub const DEFAULT_LENGTH: u32 = 32;
/// A uuid's length.
pub const UUID_LENGTH: u32 = 36;
/// A literal set with at least this many distinct characters is accepted at any length.
pub const MIN_LITERAL_CHARS: usize = 16;
/// Otherwise, `length × log2(distinct)` must reach this.
pub const MIN_ENTROPY_BITS: f64 = 128.0;

const LOWER: &str = "abcdefghijklmnopqrstuvwxyz";
const UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const DIGITS: &str = "0123456789";
const SYMBOLS: &str = "!#$%&()*+,-./:;<=>?@[]^_{|}~";

/// The named character sets of `random` generators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NamedCharset {
    /// `A-Za-z0-9` (also `alphanumeric`). The default.
    Alnum,
    /// `A-Za-z` (also `letters`).
    Alpha,
    /// `a-z`.
    Lower,
    /// `A-Z`.
    Upper,
    /// `0-9` (also `digits`).
    Numeric,
    /// `0-9a-f`.
    Hex,
    /// `A-Za-z0-9+/`.
    Base64,
    /// `A-Za-z0-9-_`.
    Base64Url,
    /// `A-Za-z0-9` and 28 ASCII symbols (also `symbols`, `ascii`): 90 characters.
    AlnumSymbols,
}

impl NamedCharset {
    /// Every named set, in documentation order.
    pub const ALL: [NamedCharset; 9] = [
        NamedCharset::Alnum,
        NamedCharset::Alpha,
        NamedCharset::Lower,
        NamedCharset::Upper,
        NamedCharset::Numeric,
        NamedCharset::Hex,
        NamedCharset::Base64,
        NamedCharset::Base64Url,
        NamedCharset::AlnumSymbols,
    ];

    /// The name bundle.json uses.
    pub fn name(self) -> &'static str {
        match self {
            NamedCharset::Alnum => "alnum",
            NamedCharset::Alpha => "alpha",
            NamedCharset::Lower => "lower",
            NamedCharset::Upper => "upper",
            NamedCharset::Numeric => "numeric",
            NamedCharset::Hex => "hex",
            NamedCharset::Base64 => "base64",
            NamedCharset::Base64Url => "base64url",
            NamedCharset::AlnumSymbols => "alnum_symbols",
        }
    }

    /// Other spellings read as the same set (written by earlier runtimes and pipelines).
    pub fn aliases(self) -> &'static [&'static str] {
        match self {
            NamedCharset::Alnum => &["alphanumeric"],
            NamedCharset::Alpha => &["letters"],
            NamedCharset::Numeric => &["digits"],
            NamedCharset::AlnumSymbols => &["symbols", "ascii"],
            _ => &[],
        }
    }

    /// The set by name or alias.
    pub fn from_name(name: &str) -> Option<NamedCharset> {
        NamedCharset::ALL
            .into_iter()
            .find(|set| set.name() == name || set.aliases().contains(&name))
    }

    /// The characters, sorted, each once.
    pub fn chars(self) -> Vec<char> {
        let text = match self {
            NamedCharset::Alnum => format!("{UPPER}{LOWER}{DIGITS}"),
            NamedCharset::Alpha => format!("{UPPER}{LOWER}"),
            NamedCharset::Lower => LOWER.to_owned(),
            NamedCharset::Upper => UPPER.to_owned(),
            NamedCharset::Numeric => DIGITS.to_owned(),
            NamedCharset::Hex => format!("{DIGITS}abcdef"),
            NamedCharset::Base64 => format!("{UPPER}{LOWER}{DIGITS}+/"),
            NamedCharset::Base64Url => format!("{UPPER}{LOWER}{DIGITS}-_"),
            NamedCharset::AlnumSymbols => format!("{UPPER}{LOWER}{DIGITS}{SYMBOLS}"),
        };
        sorted_unique(&text)
    }

    /// Every accepted spelling, names first.
    pub fn spellings() -> Vec<&'static str> {
        let mut all: Vec<&str> = NamedCharset::ALL.iter().map(|set| set.name()).collect();
        all.extend(NamedCharset::ALL.iter().flat_map(|set| set.aliases()));
        all
    }
}

fn sorted_unique(text: &str) -> Vec<char> {
    text.chars()
        .collect::<BTreeSet<char>>()
        .into_iter()
        .collect()
}

/// A `random` generator's character set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Charset {
    Named(NamedCharset),
    /// The characters as written (each once).
    Literal(String),
}

impl Charset {
    /// Reads a charset as written in a generator (see the module docs for the rules; the
    /// entropy rule needs the length and is [`check_entropy`]'s).
    pub fn parse(text: &str) -> Result<Charset, CharsetError> {
        if let Some(named) = NamedCharset::from_name(text) {
            return Ok(Charset::Named(named));
        }
        // Names are compared without case: `HEX` or `Alnum` is a name written otherwise, not
        // the set of its letters.
        let suggestion = closest_name(&text.to_ascii_lowercase());
        let mut seen = BTreeSet::new();
        let repeated: BTreeSet<char> = text.chars().filter(|c| !seen.insert(*c)).collect();
        let name_like =
            !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !repeated.is_empty()
            || (name_like && suggestion.is_some_and(|(_, d)| d <= 2 && 2 * d < text.len()))
        {
            return Err(CharsetError::UnknownName {
                charset: text.to_owned(),
                suggestion: suggestion
                    .filter(|(_, d)| *d <= (text.len() / 2).max(2))
                    .map(|(name, _)| name),
            });
        }
        if let Some(bad) = text.chars().find(|c| c.is_control() || c.is_whitespace()) {
            return Err(CharsetError::Unprintable {
                charset: text.to_owned(),
                character: bad,
            });
        }
        if seen.len() < 2 {
            return Err(CharsetError::TooSmall {
                charset: text.to_owned(),
            });
        }
        Ok(Charset::Literal(text.to_owned()))
    }

    /// The characters a value is drawn from, sorted, each once.
    pub fn chars(&self) -> Vec<char> {
        match self {
            Charset::Named(named) => named.chars(),
            Charset::Literal(text) => sorted_unique(text),
        }
    }

    /// As written in bundle.json.
    pub fn as_str(&self) -> &str {
        match self {
            Charset::Named(named) => named.name(),
            Charset::Literal(text) => text,
        }
    }
}

impl fmt::Display for Charset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Charset {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A charset is written as its name or its custom characters: a string.
impl schemars::JsonSchema for Charset {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Charset".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string"})
    }
}

/// Levenshtein distance, for "did you mean" (inputs are short names).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// The known spelling closest to `text`, with its distance (`None` for long inputs, which no
/// name is close to).
fn closest_name(text: &str) -> Option<(&'static str, usize)> {
    if text.len() > 64 {
        return None;
    }
    NamedCharset::spellings()
        .into_iter()
        .map(|name| (name, distance(text, name)))
        .min_by_key(|(_, d)| *d)
}

/// Why a charset is refused.
#[derive(Debug, Clone, PartialEq)]
pub enum CharsetError {
    UnknownName {
        charset: String,
        suggestion: Option<&'static str>,
    },
    Unprintable {
        charset: String,
        character: char,
    },
    TooSmall {
        charset: String,
    },
    WeakLiteral {
        charset: String,
        distinct: usize,
        length: u32,
        bits: f64,
        min_length: u32,
    },
}

impl fmt::Display for CharsetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = NamedCharset::ALL.map(NamedCharset::name).join(", ");
        match self {
            CharsetError::UnknownName {
                charset,
                suggestion,
            } => {
                write!(
                    f,
                    "charset `{}` is not a named set, and not a literal set (a literal set lists each character once)",
                    charset.escape_debug()
                )?;
                match suggestion {
                    Some(name) => write!(f, "; did you mean `{name}`? (named sets: {names})"),
                    None => write!(f, "; named sets: {names}"),
                }
            }
            CharsetError::Unprintable { charset, character } => write!(
                f,
                "charset `{}` holds {:?}: a literal set holds printable characters other than spaces",
                charset.escape_debug(),
                character
            ),
            CharsetError::TooSmall { charset } => write!(
                f,
                "charset `{}` is neither a named set ({names}) nor two or more characters",
                charset.escape_debug()
            ),
            CharsetError::WeakLiteral {
                charset,
                distinct,
                length,
                bits,
                min_length,
            } => write!(
                f,
                "charset `{}` has {distinct} distinct characters: {length} of them give {bits:.0} bits of entropy, under {MIN_ENTROPY_BITS:.0}; use at least {MIN_LITERAL_CHARS} distinct characters, a length of at least {min_length}, or a named set ({names})",
                charset.escape_debug()
            ),
        }
    }
}

impl std::error::Error for CharsetError {}

/// Entropy in bits of `length` characters drawn uniformly from `distinct` characters.
pub fn entropy_bits(distinct: usize, length: u32) -> f64 {
    f64::from(length) * (distinct as f64).log2()
}

/// The entropy rule of literal sets: at least [`MIN_LITERAL_CHARS`] distinct characters, or
/// [`MIN_ENTROPY_BITS`] over `length` characters. Named sets always pass.
pub fn check_entropy(charset: &Charset, length: u32) -> Result<(), CharsetError> {
    let Charset::Literal(text) = charset else {
        return Ok(());
    };
    let distinct = charset.chars().len();
    let bits = entropy_bits(distinct, length);
    if distinct >= MIN_LITERAL_CHARS || bits >= MIN_ENTROPY_BITS {
        return Ok(());
    }
    let per_char = (distinct as f64).log2();
    Err(CharsetError::WeakLiteral {
        charset: text.clone(),
        distinct,
        length,
        bits,
        min_length: (MIN_ENTROPY_BITS / per_char).ceil() as u32,
    })
}

/// A generator with its defaults applied and its rules checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct GeneratorSpec {
    #[serde(rename = "type")]
    pub kind: GeneratorType,
    pub length: u32,
    /// `random` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub charset: Option<Charset>,
}

impl Default for GeneratorSpec {
    /// `{random, 32, alnum}`.
    fn default() -> GeneratorSpec {
        GeneratorSpec {
            kind: GeneratorType::Random,
            length: DEFAULT_LENGTH,
            charset: Some(Charset::Named(NamedCharset::Alnum)),
        }
    }
}

/// A generator that breaks a rule: the field (`type`, `length`, `charset`) and why.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorError {
    pub field: &'static str,
    pub message: String,
}

impl fmt::Display for GeneratorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for GeneratorError {}

impl GeneratorSpec {
    /// Resolves a generator's fields (the defaults fill what is absent) and checks them.
    pub fn resolve(
        kind: Option<GeneratorType>,
        length: Option<u32>,
        charset: Option<&str>,
    ) -> Result<GeneratorSpec, GeneratorError> {
        let kind = kind.unwrap_or_default();
        let error = |field, message: String| GeneratorError { field, message };
        let length = match length {
            None if kind == GeneratorType::Uuid => UUID_LENGTH,
            None => DEFAULT_LENGTH,
            Some(length) if !LENGTH_RANGE.contains(&length) => {
                return Err(error(
                    "length",
                    format!("generator length {length} is outside 8..=4096"),
                ));
            }
            Some(length) => length,
        };
        if kind == GeneratorType::Uuid && length != UUID_LENGTH {
            return Err(error(
                "length",
                format!("a uuid is 36 characters long, not {length}"),
            ));
        }
        let charset = match (kind, charset) {
            (GeneratorType::Random, None) => Some(Charset::Named(NamedCharset::Alnum)),
            (GeneratorType::Random, Some(text)) => {
                let charset =
                    Charset::parse(text).map_err(|err| error("charset", err.to_string()))?;
                check_entropy(&charset, length).map_err(|err| error("charset", err.to_string()))?;
                Some(charset)
            }
            (_, None) => None,
            (other, Some(_)) => {
                return Err(error(
                    "charset",
                    format!(
                        "charset applies to random generators only (this one is {})",
                        other.as_str()
                    ),
                ));
            }
        };
        Ok(GeneratorSpec {
            kind,
            length,
            charset,
        })
    }

    /// The characters of one value for `random` and `hex` (`None` for `uuid` and `base64`,
    /// whose shape is fixed).
    pub fn alphabet(&self) -> Option<Vec<char>> {
        match self.kind {
            GeneratorType::Random => Some(
                self.charset
                    .clone()
                    .unwrap_or(Charset::Named(NamedCharset::Alnum))
                    .chars(),
            ),
            GeneratorType::Hex => Some(NamedCharset::Hex.chars()),
            GeneratorType::Uuid | GeneratorType::Base64 => None,
        }
    }

    /// Entropy of one value in bits.
    pub fn entropy_bits(&self) -> f64 {
        match self.kind {
            GeneratorType::Uuid => 122.0,
            GeneratorType::Base64 => 8.0 * f64::from(self.length),
            _ => entropy_bits(self.alphabet().map_or(0, |a| a.len()), self.length),
        }
    }

    /// As a bundle.json generator (every field written).
    pub fn to_generator(&self) -> Generator {
        Generator {
            kind: Some(self.kind),
            length: Some(self.length),
            charset: self.charset.as_ref().map(|c| c.as_str().to_owned()),
            extra: Default::default(),
        }
    }
}

impl Generator {
    /// This generator with its defaults applied, checked (see [`GeneratorSpec::resolve`]).
    /// Fields in `extra` are ignored.
    pub fn resolve(&self) -> Result<GeneratorSpec, GeneratorError> {
        GeneratorSpec::resolve(self.kind, self.length, self.charset.as_deref())
    }
}

impl GeneratorType {
    /// As bundle.json spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            GeneratorType::Random => "random",
            GeneratorType::Uuid => "uuid",
            GeneratorType::Hex => "hex",
            GeneratorType::Base64 => "base64",
        }
    }

    /// Alias of [`GeneratorType::as_str`].
    pub fn id(self) -> &'static str {
        self.as_str()
    }

    /// Reads a type as bundle.json spells it.
    pub fn parse(text: &str) -> Result<GeneratorType, String> {
        match text {
            "random" => Ok(GeneratorType::Random),
            "uuid" => Ok(GeneratorType::Uuid),
            "hex" => Ok(GeneratorType::Hex),
            "base64" => Ok(GeneratorType::Base64),
            other => Err(format!(
                "unknown generator type `{}` (random, uuid, hex or base64)",
                other.escape_debug()
            )),
        }
    }
}

impl fmt::Display for GeneratorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_sets_have_their_sizes() {
        let sizes: Vec<(&str, usize)> = NamedCharset::ALL
            .iter()
            .map(|set| (set.name(), set.chars().len()))
            .collect();
        assert_eq!(
            sizes,
            [
                ("alnum", 62),
                ("alpha", 52),
                ("lower", 26),
                ("upper", 26),
                ("numeric", 10),
                ("hex", 16),
                ("base64", 64),
                ("base64url", 64),
                ("alnum_symbols", 90),
            ]
        );
        for set in NamedCharset::ALL {
            assert_eq!(NamedCharset::from_name(set.name()), Some(set));
            for alias in set.aliases() {
                assert_eq!(NamedCharset::from_name(alias), Some(set));
            }
        }
    }

    #[test]
    fn unknown_names_are_errors_with_a_suggestion() {
        for (text, suggestion) in [
            ("alnum_sybmols", Some("alnum_symbols")),
            ("alnum-symbols", Some("alnum_symbols")),
            ("alphanum", Some("alnum")),
            ("hexa", Some("hex")),
            ("symbol", Some("symbols")),
            ("aaaa", None),
        ] {
            match Charset::parse(text) {
                Err(CharsetError::UnknownName {
                    suggestion: found, ..
                }) => assert_eq!(found, suggestion, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        let message = Charset::parse("alnum_sybmols").unwrap_err().to_string();
        assert!(
            message.contains("did you mean `alnum_symbols`?"),
            "{message}"
        );
    }

    #[test]
    fn literal_sets_need_entropy() {
        let literal = Charset::parse("abcdef").unwrap();
        assert_eq!(literal.chars().len(), 6);
        let err = check_entropy(&literal, 12).unwrap_err().to_string();
        assert!(err.contains("6 distinct characters"), "{err}");
        assert!(err.contains("a length of at least 50"), "{err}");
        assert!(check_entropy(&literal, 50).is_ok());
        assert!(check_entropy(&literal, 49).is_err());
        let sixteen = Charset::parse("0123456789ABCDEF").unwrap();
        assert!(check_entropy(&sixteen, 8).is_ok());
        assert!(matches!(
            Charset::parse("x"),
            Err(CharsetError::TooSmall { .. })
        ));
        assert!(matches!(
            Charset::parse("ab c"),
            Err(CharsetError::Unprintable { .. })
        ));
        assert!(
            check_entropy(&Charset::Named(NamedCharset::Numeric), 8).is_ok(),
            "named sets are what they say"
        );
    }

    #[test]
    fn resolution_applies_defaults_and_rules() {
        assert_eq!(
            GeneratorSpec::resolve(None, None, None).unwrap(),
            GeneratorSpec::default()
        );
        let uuid = GeneratorSpec::resolve(Some(GeneratorType::Uuid), None, None).unwrap();
        assert_eq!((uuid.length, uuid.charset), (36, None));
        for (kind, length, charset, field) in [
            (None, Some(7), None, "length"),
            (Some(GeneratorType::Hex), Some(4097), None, "length"),
            (Some(GeneratorType::Uuid), Some(32), None, "length"),
            (Some(GeneratorType::Hex), None, Some("alnum"), "charset"),
            (None, None, Some("alnum_sybmols"), "charset"),
            (None, Some(12), Some("abcdef"), "charset"),
        ] {
            let err = GeneratorSpec::resolve(kind, length, charset).unwrap_err();
            assert_eq!(err.field, field, "{err}");
        }
        assert_eq!(
            serde_json::to_value(GeneratorSpec::default()).unwrap(),
            serde_json::json!({"type": "random", "length": 32, "charset": "alnum"})
        );
    }
}
