//! Parses `#[task(...)]`'s options and the function it is applied to.

use proc_macro2::{TokenStream, TokenTree};
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::{Ident, ItemFn, LitStr, Path, Token};

use crate::errors::Errors;

/// The option keys, in the order error messages list them.
const KEYS: &[&str] = &["name", "timeout", "idempotent", "crate"];

/// What `#[task(...)]` was given; `None` where an option was left out or was invalid.
#[derive(Default)]
pub(crate) struct Options {
    /// `name = "..."`: the registered name, overriding `module_path!()::fn_name`.
    pub(crate) name: Option<LitStr>,
    /// `timeout = "..."`: the task's default timeout, in nanoseconds.
    pub(crate) timeout_nanos: Option<u64>,
    /// `idempotent` or `idempotent = true`: the task may run again after a lost worker.
    pub(crate) idempotent: bool,
    /// `crate = "..."`: the path of the facade crate.
    pub(crate) krate: Option<Path>,
}

/// Parses the function `#[task]` is applied to.
pub(crate) fn function(item: TokenStream) -> syn::Result<ItemFn> {
    syn::parse2(item).map_err(|e| {
        syn::Error::new(
            e.span(),
            format!("#[task] applies to a function, like `fn name(x: u64) -> u64 {{ .. }}`: {e}"),
        )
    })
}

// The accepted grammar, every key optional, in any order, each at most once:
//
//     #[task]
//     #[task(name = "registered::name", timeout = "10s", crate = "path::to::facade")]
//     #[task(idempotent)]                       // the same as `idempotent = true`
//
// `idempotent` is the one flag: alone, or `= true` / `= false` (a bool, not a string).
// `timeout` is a number, integer or decimal, followed by a unit among `ms`, `s`, `m` and `h`:
// "500ms", "1.5s", "2m", "1h". An invalid entry is recorded in `errors` and skipped, so that
// the other entries are still checked.
pub(crate) fn options(args: TokenStream, errors: &mut Errors) -> Options {
    let mut options = Options::default();
    let parser = |input: ParseStream<'_>| {
        let mut seen: Vec<String> = Vec::new();
        while !input.is_empty() {
            if let Err(error) = entry(input, &mut options, &mut seen) {
                errors.push(error);
                skip_past_comma(input)?;
                continue;
            }
            if !input.is_empty() {
                if let Err(error) = input.parse::<Token![,]>() {
                    errors.push(error);
                    skip_past_comma(input)?;
                }
            }
        }
        Ok(())
    };
    if let Err(error) = parser.parse2(args) {
        errors.push(error);
    }
    options
}

/// One `key = "value"` entry.
fn entry(input: ParseStream<'_>, options: &mut Options, seen: &mut Vec<String>) -> syn::Result<()> {
    // `crate` is a keyword: `parse_any` accepts it as a key.
    let key = input.call(Ident::parse_any)?;
    let key_name = key.to_string();
    if !KEYS.contains(&key_name.as_str()) {
        let expected = KEYS
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(syn::Error::new_spanned(
            &key,
            format!("unknown attribute `{key_name}`, expected one of {expected}"),
        ));
    }
    if seen.contains(&key_name) {
        return Err(syn::Error::new_spanned(
            &key,
            format!("`{key_name}` set multiple times"),
        ));
    }
    seen.push(key_name.clone());

    if key_name == "idempotent" {
        options.idempotent = flag(input, &key_name)?;
        return Ok(());
    }
    input.parse::<Token![=]>()?;
    let value = input.parse::<LitStr>().map_err(|e| {
        syn::Error::new(
            e.span(),
            format!("expected a string literal: `{key_name} = \"...\"`"),
        )
    })?;

    match key_name.as_str() {
        "name" => {
            if value.value().is_empty() {
                return Err(syn::Error::new_spanned(
                    &value,
                    "a task name cannot be empty",
                ));
            }
            options.name = Some(value);
        }
        "timeout" => {
            let nanos = timeout_nanos(&value.value())
                .map_err(|message| syn::Error::new_spanned(&value, message))?;
            options.timeout_nanos = Some(nanos);
        }
        _ => {
            let path = value.parse_with(Path::parse_mod_style).map_err(|_| {
                syn::Error::new_spanned(
                    &value,
                    format!(
                        "invalid crate path `{}`, expected a path like \"cf\" or \"::cf\"",
                        value.value()
                    ),
                )
            })?;
            options.krate = Some(path);
        }
    }
    Ok(())
}

/// A flag's value: `true` when written alone, else the bool after `=`.
fn flag(input: ParseStream<'_>, key_name: &str) -> syn::Result<bool> {
    if input.is_empty() || input.peek(Token![,]) {
        return Ok(true);
    }
    input.parse::<Token![=]>()?;
    input.parse::<syn::LitBool>().map(|b| b.value).map_err(|e| {
        syn::Error::new(
            e.span(),
            format!("expected `true` or `false`: `{key_name}`, or `{key_name} = false`"),
        )
    })
}

/// Skips what is left of a malformed entry, up to and including the next `,`.
fn skip_past_comma(input: ParseStream<'_>) -> syn::Result<()> {
    input.step(|cursor| {
        let mut rest = *cursor;
        while let Some((tree, next)) = rest.token_tree() {
            rest = next;
            if matches!(&tree, TokenTree::Punct(p) if p.as_char() == ',') {
                break;
            }
        }
        Ok(((), rest))
    })
}

/// Nanoseconds per unit of a timeout.
fn unit_nanos(unit: &str) -> Option<u128> {
    match unit {
        "ms" => Some(1_000_000),
        "s" => Some(1_000_000_000),
        "m" => Some(60 * 1_000_000_000),
        "h" => Some(60 * 60 * 1_000_000_000),
        _ => None,
    }
}

/// Reads `"1.5s"` as nanoseconds, exactly: no floating point, so `"0.1s"` is 100 ms.
pub(crate) fn timeout_nanos(text: &str) -> Result<u64, String> {
    let invalid = |why: &str| format!("invalid timeout `{text}`: {why}");
    let expected = "expected a number and a unit, like \"500ms\", \"1.5s\", \"2m\" or \"1h\"";

    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (number, ""),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let letters = unit.bytes().all(|b| b.is_ascii_alphabetic());
    if !digits(whole) || (number.contains('.') && !digits(fraction)) || !letters {
        return Err(invalid(expected));
    }
    if unit.is_empty() {
        return Err(invalid("missing unit, expected `ms`, `s`, `m` or `h`"));
    }
    let Some(per_unit) = unit_nanos(unit) else {
        return Err(invalid(&format!(
            "unknown unit `{unit}`, expected `ms`, `s`, `m` or `h`"
        )));
    };

    let too_large = || invalid("too large, the most is 584 years");
    let whole = whole.trim_start_matches('0');
    let fraction = fraction.trim_end_matches('0');
    // Beyond these lengths the value overflows `u64` nanoseconds, or is finer than one.
    if whole.len() > 20 {
        return Err(too_large());
    }
    if fraction.len() > 19 {
        return Err(invalid("finer than a nanosecond"));
    }
    let whole: u128 = whole.parse().unwrap_or(0);
    let fraction_value: u128 = fraction.parse().unwrap_or(0);
    let scale = 10u128.pow(fraction.len() as u32);
    let fraction_nanos = fraction_value * per_unit;
    if !fraction_nanos.is_multiple_of(scale) {
        return Err(invalid("finer than a nanosecond"));
    }
    let nanos = whole * per_unit + fraction_nanos / scale;
    if nanos == 0 {
        return Err(invalid("a timeout must be longer than zero"));
    }
    u64::try_from(nanos).map_err(|_| too_large())
}

#[cfg(test)]
mod tests {
    use super::timeout_nanos;

    #[test]
    fn timeouts_in_every_unit() {
        assert_eq!(timeout_nanos("500ms"), Ok(500_000_000));
        assert_eq!(timeout_nanos("10s"), Ok(10_000_000_000));
        assert_eq!(timeout_nanos("1.5s"), Ok(1_500_000_000));
        assert_eq!(timeout_nanos("2m"), Ok(120_000_000_000));
        assert_eq!(timeout_nanos("1h"), Ok(3_600_000_000_000));
        assert_eq!(timeout_nanos("0.1s"), Ok(100_000_000));
        assert_eq!(timeout_nanos("0.000001ms"), Ok(1));
        assert_eq!(timeout_nanos("007.50s"), Ok(7_500_000_000));
    }

    #[test]
    fn invalid_timeouts() {
        for text in [
            "",
            "s",
            "10",
            "1.s",
            ".5s",
            "1..5s",
            "10x",
            "10 s",
            "-1s",
            "1e3s",
            "0s",
            "0.0ms",
            "1.0000000001s",
            "6000000h",
        ] {
            let error = timeout_nanos(text).expect_err(text);
            assert!(
                error.starts_with(&format!("invalid timeout `{text}`: ")),
                "{error}"
            );
        }
    }
}
