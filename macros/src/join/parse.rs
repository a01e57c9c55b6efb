//! Parses `join_completed!`'s input: a collection of futures, or arms `name = future => body`.

use proc_macro2::{Span, TokenStream, TokenTree};
use syn::parse::{ParseStream, Parser};
use syn::{Expr, Ident, Token};

use crate::errors::Errors;

/// What `join_completed!` was given.
pub(crate) struct Input {
    /// The facade's path, `$crate` as the facade's `macro_rules!` passes it.
    pub(crate) krate: TokenStream,
    pub(crate) form: Form,
}

pub(crate) enum Form {
    /// `futures` or `futures, timeout = duration`.
    Collection {
        futures: Box<Expr>,
        timeout: Option<Box<Expr>>,
    },
    /// `name = future => body, ...`.
    Arms(Vec<Arm>),
}

/// `name = future => body`.
pub(crate) struct Arm {
    /// `name` or `_`, bound to the future's `Result<T, Error>` in `body`.
    pub(crate) binding: TokenStream,
    /// How panics name the arm.
    pub(crate) label: String,
    pub(crate) future: Expr,
    pub(crate) body: Expr,
}

const ARM: &str = "expected `name = future => body`";

// The accepted grammar, after the `$crate ;` that the facade's `macro_rules!` puts first:
//
//     futures
//     futures, timeout = duration
//     name = future => body, name = future => body
//
// each with an optional trailing comma. `name` is an identifier or `_`; the input is in arm
// form when it starts with one followed by a single `=` (not `==` or `=>`). As in a `match`,
// an arm whose body is a block needs no comma after it. A malformed arm is recorded in
// `errors` and skipped up to the next comma, so that the others are still checked.
pub(crate) fn input(tokens: TokenStream, errors: &mut Errors) -> Option<Input> {
    let parser = |input: ParseStream<'_>| {
        let krate = krate(input)?;
        if input.is_empty() {
            return Err(syn::Error::new(
                Span::call_site(),
                "expected futures: `join_completed!(futures)` or \
                 `join_completed! { name = future => body, .. }`",
            ));
        }
        let form = if is_arm_start(input) {
            Form::Arms(arms(input, errors)?)
        } else {
            collection(input, errors)?
        };
        Ok(Input { krate, form })
    };
    match parser.parse2(tokens) {
        Ok(input) => Some(input),
        Err(error) => {
            errors.push(error);
            None
        }
    }
}

/// The tokens before the first `;`.
fn krate(input: ParseStream<'_>) -> syn::Result<TokenStream> {
    input.step(|cursor| {
        let mut krate = TokenStream::new();
        let mut rest = *cursor;
        while let Some((tree, next)) = rest.token_tree() {
            if matches!(&tree, TokenTree::Punct(p) if p.as_char() == ';') {
                return Ok((krate, next));
            }
            krate.extend([tree]);
            rest = next;
        }
        Err(cursor.error("expected the facade's path and `;`: use `join_completed!`"))
    })
}

/// `name =` but not `name ==` or `name =>`.
fn is_arm_start(input: ParseStream<'_>) -> bool {
    (input.peek(Ident) || input.peek(Token![_]))
        && input.peek2(Token![=])
        && !input.peek2(Token![==])
        && !input.peek2(Token![=>])
}

fn collection(input: ParseStream<'_>, errors: &mut Errors) -> syn::Result<Form> {
    let futures: Box<Expr> = input.parse()?;
    let mut timeout = None;
    if !input.is_empty() {
        input.parse::<Token![,]>().map_err(|e| {
            syn::Error::new(
                e.span(),
                "expected `,` or the end after the futures; arms are written `name = future => body`",
            )
        })?;
    }
    while !input.is_empty() {
        let key: Ident = input
            .parse()
            .map_err(|e| syn::Error::new(e.span(), "expected `timeout = duration`"))?;
        if key != "timeout" {
            errors.spanned(&key, format!("unknown option `{key}`, expected `timeout`"));
        } else if timeout.is_some() {
            errors.spanned(&key, "`timeout` set multiple times");
        }
        input.parse::<Token![=]>()?;
        let value: Box<Expr> = input.parse()?;
        if key == "timeout" {
            timeout.get_or_insert(value);
        }
        if !input.is_empty() {
            input.parse::<Token![,]>()?;
        }
    }
    Ok(Form::Collection { futures, timeout })
}

fn arms(input: ParseStream<'_>, errors: &mut Errors) -> syn::Result<Vec<Arm>> {
    let mut arms = Vec::new();
    while !input.is_empty() {
        match arm(input) {
            Ok(arm) => {
                let block_like = is_block_like(&arm.body);
                arms.push(arm);
                if input.is_empty() {
                    break;
                }
                if input.peek(Token![,]) {
                    input.parse::<Token![,]>()?;
                } else if !block_like {
                    errors.push(input.error("expected `,` after the arm's body"));
                    skip_past_comma(input)?;
                }
            }
            Err(error) => {
                errors.push(error);
                skip_past_comma(input)?;
            }
        }
    }
    Ok(arms)
}

fn arm(input: ParseStream<'_>) -> syn::Result<Arm> {
    let (binding, label) = if input.peek(Token![_]) {
        let underscore: Token![_] = input.parse()?;
        (quote::quote!(#underscore), "_".to_owned())
    } else {
        let ident: Ident = input.parse().map_err(|e| syn::Error::new(e.span(), ARM))?;
        let label = ident.to_string();
        (quote::quote!(#ident), label)
    };
    if input.peek(Token![=>]) {
        return Err(syn::Error::new_spanned(
            &binding,
            format!("missing `= future` after `{label}`: {ARM}"),
        ));
    }
    if !input.peek(Token![=]) || input.peek(Token![==]) {
        return Err(input.error(ARM));
    }
    input.parse::<Token![=]>()?;
    if input.is_empty() || input.peek(Token![=>]) || input.peek(Token![,]) {
        return Err(input.error("expected the future after `=`: `name = future => body`"));
    }
    let future: Expr = input.parse()?;
    if !input.peek(Token![=>]) {
        let message = "expected `=> body` after the future: `name = future => body`";
        // At the end of the input, point at the future rather than the whole macro call.
        return Err(if input.is_empty() {
            syn::Error::new_spanned(&future, message)
        } else {
            input.error(message)
        });
    }
    input.parse::<Token![=>]>()?;
    if input.is_empty() || input.peek(Token![,]) {
        return Err(input.error("expected the arm's body after `=>`: `name = future => body`"));
    }
    let body: Expr = input.parse()?;
    Ok(Arm {
        binding,
        label,
        future,
        body,
    })
}

/// Bodies that, like a `match` arm's, need no comma after them.
fn is_block_like(body: &Expr) -> bool {
    matches!(
        body,
        Expr::Block(_)
            | Expr::If(_)
            | Expr::Match(_)
            | Expr::Loop(_)
            | Expr::While(_)
            | Expr::ForLoop(_)
            | Expr::Unsafe(_)
            | Expr::Const(_)
            | Expr::TryBlock(_)
    )
}

/// Skips what is left of a malformed arm, up to and including the next `,`.
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
