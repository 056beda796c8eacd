//! Env templates: `${service.port_name}` (another service's allocated port), `${data}` (the app
//! data directory), `${bundle}` (the bundle directory), in service and binary `env` values,
//! `args` and migration commands; and `${secret.ID}` (the value of a secret the service lists in
//! its `secrets`), in service `env` values only.
//!
//! Parsing is shared by validation (which warns about references to unknown ports) and the
//! runtime (which substitutes them). A `$` not followed by `{` is literal; an unterminated
//! `${` is literal text.

/// One piece of a template string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'a> {
    Text(&'a str),
    /// `${data}`
    Data,
    /// `${bundle}`
    Bundle,
    /// `${secret.ID}`
    Secret(&'a str),
    /// `${service.port_name}`
    Port {
        service: &'a str,
        port: &'a str,
    },
    /// `${anything else}`: kept as written by substitution.
    Unknown(&'a str),
}

/// Splits a template string into its pieces.
pub fn parse(text: &str) -> Vec<Piece<'_>> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start + 2..].find('}') else {
            break;
        };
        if start > 0 {
            pieces.push(Piece::Text(&rest[..start]));
        }
        let inner = &rest[start + 2..start + 2 + len];
        pieces.push(match inner {
            "data" => Piece::Data,
            "bundle" => Piece::Bundle,
            _ if inner.starts_with("secret.") && inner.len() > "secret.".len() => {
                Piece::Secret(&inner["secret.".len()..])
            }
            _ => match inner.rsplit_once('.') {
                Some((service, port)) if !service.is_empty() && !port.is_empty() => {
                    Piece::Port { service, port }
                }
                _ => Piece::Unknown(&rest[start..start + 3 + len]),
            },
        });
        rest = &rest[start + 3 + len..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest));
    }
    pieces
}

/// The ids of the `${secret.ID}` templates in `text`, in order.
pub fn secret_refs(text: &str) -> Vec<&str> {
    parse(text)
        .into_iter()
        .filter_map(|piece| match piece {
            Piece::Secret(id) => Some(id),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind() {
        assert_eq!(
            parse("file:${data}/x.db ${api.http}${bundle}$HOME ${x} ${open"),
            vec![
                Piece::Text("file:"),
                Piece::Data,
                Piece::Text("/x.db "),
                Piece::Port {
                    service: "api",
                    port: "http"
                },
                Piece::Bundle,
                Piece::Text("$HOME "),
                Piece::Unknown("${x}"),
                Piece::Text(" ${open"),
            ]
        );
        assert_eq!(parse(""), vec![]);
        assert_eq!(
            parse("Bearer ${secret.api_key}"),
            vec![Piece::Text("Bearer "), Piece::Secret("api_key")]
        );
        assert_eq!(
            secret_refs("${secret.a}:${b.c}${secret.}${secret.d}"),
            ["a", "d"]
        );
        assert_eq!(
            parse("${playwright-driver.http}"),
            vec![Piece::Port {
                service: "playwright-driver",
                port: "http"
            }]
        );
    }
}
