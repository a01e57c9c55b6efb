//! The task as `check` and `expand` see it: the user's function, kept whole, and what follows from it.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::ext::IdentExt;
use syn::{FnArg, Ident, ItemFn, Pat, PatType, Receiver, ReturnType, Token, Type};

use super::parse::Options;

/// One `#[task]` function.
pub(crate) struct Task<'a> {
    pub(crate) func: &'a ItemFn,
    pub(crate) options: Options,
    /// The task type: the function's name in UpperCamelCase.
    pub(crate) type_ident: Ident,
    /// `self` arguments, which a task cannot have.
    pub(crate) receivers: Vec<&'a Receiver>,
    pub(crate) args: Vec<Arg<'a>>,
}

/// One typed argument, which becomes a field of the task type.
pub(crate) struct Arg<'a> {
    pub(crate) typed: &'a PatType,
    /// The field's name, when the pattern is `x` or `mut x`; `None` for any other pattern.
    pub(crate) ident: Option<&'a Ident>,
    pub(crate) mutability: Option<&'a Token![mut]>,
}

impl<'a> Task<'a> {
    pub(crate) fn new(func: &'a ItemFn, options: Options) -> Self {
        let mut receivers = Vec::new();
        let mut args = Vec::new();
        for input in &func.sig.inputs {
            match input {
                FnArg::Receiver(receiver) => receivers.push(receiver),
                FnArg::Typed(typed) => args.push(Arg::new(typed)),
            }
        }
        let type_ident = format_ident!(
            "{}",
            upper_camel(&func.sig.ident.unraw().to_string()),
            span = func.sig.ident.span()
        );
        Self {
            func,
            options,
            type_ident,
            receivers,
            args,
        }
    }

    /// The function's name as written, without `r#`.
    pub(crate) fn fn_name(&self) -> String {
        self.func.sig.ident.unraw().to_string()
    }

    /// The declared return type; `None` for `()` written as no `->`.
    pub(crate) fn output(&self) -> Option<&'a Type> {
        match &self.func.sig.output {
            ReturnType::Default => None,
            ReturnType::Type(_, ty) => Some(ty),
        }
    }

    /// The facade's `__private` module, from `crate = "..."` or `::concurrent_futures`.
    pub(crate) fn private(&self) -> TokenStream {
        match &self.options.krate {
            Some(path) => quote!(#path::__private),
            None => quote!(::concurrent_futures::__private),
        }
    }
}

impl<'a> Arg<'a> {
    fn new(typed: &'a PatType) -> Self {
        match &*typed.pat {
            Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => Self {
                typed,
                ident: Some(&pat.ident),
                mutability: pat.mutability.as_ref(),
            },
            _ => Self {
                typed,
                ident: None,
                mutability: None,
            },
        }
    }

    pub(crate) fn ty(&self) -> &'a Type {
        &self.typed.ty
    }
}

/// `square_number` → `SquareNumber`; a name that would not start with a letter gets a `Task`
/// prefix (`_1` → `Task1`).
fn upper_camel(snake: &str) -> String {
    let mut camel = String::with_capacity(snake.len());
    for word in snake.split('_') {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            camel.extend(first.to_uppercase());
            camel.push_str(chars.as_str());
        }
    }
    if !camel.starts_with(|c: char| c.is_alphabetic()) {
        camel.insert_str(0, "Task");
    }
    camel
}

#[cfg(test)]
mod tests {
    use super::upper_camel;

    #[test]
    fn type_names_are_upper_camel_case() {
        assert_eq!(upper_camel("square_number"), "SquareNumber");
        assert_eq!(upper_camel("add"), "Add");
        assert_eq!(upper_camel("http_get_v2"), "HttpGetV2");
        assert_eq!(upper_camel("_private_helper"), "PrivateHelper");
        assert_eq!(upper_camel("a__b"), "AB");
        assert_eq!(upper_camel("_1"), "Task1");
        assert_eq!(upper_camel("already_Camel"), "AlreadyCamel");
    }
}
