//! `#[main]`: puts `init()` first in `main`, where a process-pool worker enters.

use proc_macro2::TokenStream;
use quote::quote;
use syn::parse::Parser;
use syn::{ItemFn, LitStr, Path, Token};

// The accepted grammar:
//
//     #[concurrent_futures::main]
//     #[concurrent_futures::main(crate = "path::to::facade")]
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let krate = match crate_path(args) {
        Ok(krate) => krate,
        Err(error) => {
            let error = error.to_compile_error();
            return quote!(#item #error);
        }
    };
    let mut func: ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(error) => {
            let error = syn::Error::new(
                error.span(),
                format!("#[main] applies to `fn main`: {error}"),
            )
            .to_compile_error();
            return quote!(#item #error);
        }
    };
    if func.sig.asyncness.is_some() {
        let error = syn::Error::new_spanned(
            func.sig.asyncness,
            "#[concurrent_futures::main] goes below an async runtime's attribute, which turns \
             `async fn main` into a plain one",
        )
        .to_compile_error();
        return quote!(#func #error);
    }
    let init: syn::Stmt = syn::parse_quote!(#krate::init(););
    func.block.stmts.insert(0, init);
    quote!(#func)
}

fn crate_path(args: TokenStream) -> syn::Result<TokenStream> {
    if args.is_empty() {
        return Ok(quote!(::concurrent_futures));
    }
    let parser = |input: syn::parse::ParseStream<'_>| {
        input.parse::<Token![crate]>()?;
        input.parse::<Token![=]>()?;
        let path: LitStr = input.parse()?;
        if !input.is_empty() {
            return Err(input.error("expected only `crate = \"path\"`"));
        }
        let path: Path = path.parse()?;
        Ok(quote!(#path))
    };
    parser.parse2(args)
}
