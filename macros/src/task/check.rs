//! Rejects the functions that cannot be tasks, each error pointing at the offending tokens.

use syn::visit::{self, Visit};
use syn::{GenericArgument, Lifetime, PathArguments, Type, TypeImplTrait, TypeReference};

use super::model::Task;
use crate::errors::Errors;

/// Records every reason `task` cannot be a task in `errors`.
pub(crate) fn check(task: &Task<'_>, errors: &mut Errors) {
    let sig = &task.func.sig;

    if !sig.generics.params.is_empty() {
        errors.spanned(
            &sig.generics,
            "a task cannot be generic: a worker process rebuilds it by name, so its type must be concrete",
        );
    } else if let Some(where_clause) = &sig.generics.where_clause {
        errors.spanned(
            where_clause,
            "a task cannot have a `where` clause: its type must be concrete",
        );
    }
    if let Some(asyncness) = &sig.asyncness {
        errors.spanned(
            asyncness,
            "a task cannot be an `async fn`: executors run tasks on threads, so block inside the body instead",
        );
    }
    if let Some(unsafety) = &sig.unsafety {
        errors.spanned(
            unsafety,
            "a task cannot be an `unsafe fn`: an executor calls it with no way to uphold its contract",
        );
    }
    if let Some(abi) = &sig.abi {
        errors.spanned(abi, "a task cannot have an `extern` ABI");
    }
    if let Some(variadic) = &sig.variadic {
        errors.spanned(variadic, "a task cannot be variadic");
    }
    for receiver in &task.receivers {
        errors.spanned(
            receiver,
            "a task cannot take `self`: write it as a free function and pass the value as an argument",
        );
    }

    for arg in &task.args {
        for attr in &arg.typed.attrs {
            if attr.path().is_ident("cfg") || attr.path().is_ident("cfg_attr") {
                errors.spanned(
                    attr,
                    "a task argument cannot be conditional: it is a field of the task type",
                );
            }
        }
        if arg.ident.is_none() {
            errors.spanned(
                &arg.typed.pat,
                "a task argument must be a plain name like `x` or `mut x`: it becomes a field of the task type",
            );
        }
        for borrow in borrows(arg.ty()) {
            match borrow {
                Borrow::Reference(reference) => errors.spanned(
                    reference,
                    format!(
                        "a task argument cannot be borrowed: {}",
                        owned_suggestion(reference)
                    ),
                ),
                Borrow::Lifetime(lifetime) => errors.spanned(
                    lifetime,
                    format!(
                        "a task argument cannot borrow: remove the lifetime `{lifetime}` and use an owned type",
                    ),
                ),
                Borrow::ImplTrait(impl_trait) => errors.spanned(
                    impl_trait,
                    "a task argument cannot be `impl Trait`: the task type stores it, so name a concrete type",
                ),
            }
        }
    }

    if let Some(output) = task.output() {
        for borrow in borrows(output) {
            match borrow {
                Borrow::Reference(reference) => errors.spanned(
                    reference,
                    format!(
                        "a task cannot return a borrowed value: {}",
                        owned_suggestion(reference)
                    ),
                ),
                Borrow::Lifetime(lifetime) => errors.spanned(
                    lifetime,
                    format!(
                        "a task cannot return a borrowed value: remove the lifetime `{lifetime}` and use an owned type",
                    ),
                ),
                Borrow::ImplTrait(impl_trait) => errors.spanned(
                    impl_trait,
                    "a task cannot return `impl Trait`: name the type, which a worker's result is decoded into",
                ),
            }
        }
    }
}

/// Something in a type that borrows, or hides the type.
enum Borrow<'a> {
    Reference(&'a TypeReference),
    /// Any lifetime but `'static`.
    Lifetime(&'a Lifetime),
    ImplTrait(&'a TypeImplTrait),
}

/// Every reference, non-`'static` lifetime and `impl Trait` in `ty`, outermost first.
fn borrows(ty: &Type) -> Vec<Borrow<'_>> {
    struct Finder<'a>(Vec<Borrow<'a>>);

    impl<'a> Visit<'a> for Finder<'a> {
        // One error per reference: what is inside it is reported with it.
        fn visit_type_reference(&mut self, reference: &'a TypeReference) {
            self.0.push(Borrow::Reference(reference));
        }

        fn visit_type_impl_trait(&mut self, impl_trait: &'a TypeImplTrait) {
            self.0.push(Borrow::ImplTrait(impl_trait));
        }

        fn visit_lifetime(&mut self, lifetime: &'a Lifetime) {
            if lifetime.ident != "static" {
                self.0.push(Borrow::Lifetime(lifetime));
            }
            visit::visit_lifetime(self, lifetime);
        }
    }

    let mut finder = Finder(Vec::new());
    finder.visit_type(ty);
    finder.0
}

/// "use `String` instead of `&str`", or a general hint when no owned type is obvious.
fn owned_suggestion(reference: &TypeReference) -> String {
    let general = "a task owns its arguments and its result, so use an owned type".to_owned();
    let Some(borrowed) = show(&Type::Reference(reference.clone())) else {
        return general;
    };
    let owned = match &*reference.elem {
        Type::Slice(slice) => show(&slice.elem).map(|elem| format!("Vec<{elem}>")),
        Type::Path(path) if path.qself.is_none() => {
            // `str`, `Path`, `OsStr`, `CStr` (also as `std::path::Path`): name the owned twin.
            let mut owned = path.clone();
            if let Some(last) = owned.path.segments.last_mut() {
                let twin = match last.ident.to_string().as_str() {
                    "str" => Some("String"),
                    "Path" => Some("PathBuf"),
                    "OsStr" => Some("OsString"),
                    "CStr" => Some("CString"),
                    _ => None,
                };
                if let (Some(twin), PathArguments::None) = (twin, &last.arguments) {
                    last.ident = syn::Ident::new(twin, last.ident.span());
                }
            }
            show(&Type::Path(owned))
        }
        elem => show(elem),
    };
    match owned {
        // A suggestion that still borrows would not help.
        Some(owned) if !owned.contains('\'') => format!("use `{owned}` instead of `{borrowed}`"),
        _ => general,
    }
}

/// Writes the simple types that suggestions name (paths, slices, tuples, references) the way
/// a person would; `None` for anything else.
fn show(ty: &Type) -> Option<String> {
    match ty {
        Type::Path(path) if path.qself.is_none() => {
            let mut out = String::new();
            if path.path.leading_colon.is_some() {
                out.push_str("::");
            }
            for (i, segment) in path.path.segments.iter().enumerate() {
                if i > 0 {
                    out.push_str("::");
                }
                out.push_str(&segment.ident.to_string());
                match &segment.arguments {
                    PathArguments::None => {}
                    PathArguments::AngleBracketed(args) => {
                        let args = args
                            .args
                            .iter()
                            .map(|arg| match arg {
                                GenericArgument::Type(ty) => show(ty),
                                GenericArgument::Lifetime(lifetime) => Some(lifetime.to_string()),
                                _ => None,
                            })
                            .collect::<Option<Vec<_>>>()?;
                        out.push_str(&format!("<{}>", args.join(", ")));
                    }
                    PathArguments::Parenthesized(_) => return None,
                }
            }
            Some(out)
        }
        Type::Slice(slice) => Some(format!("[{}]", show(&slice.elem)?)),
        Type::Tuple(tuple) => {
            let elems = tuple.elems.iter().map(show).collect::<Option<Vec<_>>>()?;
            if elems.len() == 1 {
                Some(format!("({},)", elems[0]))
            } else {
                Some(format!("({})", elems.join(", ")))
            }
        }
        Type::Reference(reference) => {
            let lifetime = reference
                .lifetime
                .as_ref()
                .map(|l| format!("{l} "))
                .unwrap_or_default();
            let mutability = if reference.mutability.is_some() {
                "mut "
            } else {
                ""
            };
            Some(format!("&{lifetime}{mutability}{}", show(&reference.elem)?))
        }
        Type::Paren(paren) => show(&paren.elem),
        Type::Group(group) => show(&group.elem),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use syn::{Type, parse_quote};

    use super::owned_suggestion;

    fn suggest(ty: Type) -> String {
        let Type::Reference(reference) = ty else {
            panic!("not a reference")
        };
        owned_suggestion(&reference)
    }

    #[test]
    fn suggestions_name_the_owned_type() {
        assert_eq!(
            suggest(parse_quote!(&str)),
            "use `String` instead of `&str`"
        );
        assert_eq!(
            suggest(parse_quote!(&'static str)),
            "use `String` instead of `&'static str`"
        );
        assert_eq!(
            suggest(parse_quote!(&[u8])),
            "use `Vec<u8>` instead of `&[u8]`"
        );
        assert_eq!(
            suggest(parse_quote!(&mut std::path::Path)),
            "use `std::path::PathBuf` instead of `&mut std::path::Path`"
        );
        assert_eq!(
            suggest(parse_quote!(&Path)),
            "use `PathBuf` instead of `&Path`"
        );
        assert_eq!(
            suggest(parse_quote!(&Vec<(u8, String)>)),
            "use `Vec<(u8, String)>` instead of `&Vec<(u8, String)>`"
        );
        assert_eq!(
            suggest(parse_quote!(&dyn Fn())),
            "a task owns its arguments and its result, so use an owned type"
        );
    }
}
