//! `composable new`: a new application, or a new aggregate or saga in one.
//!
//! The templates are ordinary Rust with `{{placeholders}}`; the project's tests generate an
//! application from them, add an aggregate and a saga, and build and test the result, so they
//! cannot rot.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the generated project takes Composable from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The released crate of this version, from the registry.
    Registry(String),
    /// A local checkout of the framework (its workspace root): for trying unreleased versions,
    /// and for the framework's own tests.
    Path(PathBuf),
}

impl Source {
    /// The released crate this tool was built with.
    pub fn this_release() -> Self {
        Self::Registry(env!("CARGO_PKG_VERSION").to_owned())
    }

    /// The dependency line of the framework's crate `name` (in `dir` of a checkout), with
    /// `extra` keys such as `features = ["testing"]` or `optional = true`.
    fn dependency(&self, name: &str, dir: &str, extra: &str) -> String {
        let extra = if extra.is_empty() { String::new() } else { format!(", {extra}") };
        match self {
            Self::Registry(version) => format!("{name} = {{ version = \"{version}\"{extra} }}"),
            Self::Path(root) => {
                let path = root.join(dir);
                let path = path.to_string_lossy().replace('\\', "/");
                format!("{name} = {{ path = \"{path}\"{extra} }}")
            }
        }
    }
}

/// Why scaffolding refused or failed. Nothing is left half-written by a refusal: names and
/// places are checked before any file is written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NewError {
    /// The application name is not a package name this tool accepts.
    #[error(
        "`{0}` is not an application name: use lowercase letters, digits, `-` and `_`, starting \
         with a letter, as in `shop` or `order-service`, and not a Rust keyword or a crate it \
         depends on"
    )]
    AppName(String),
    /// The type name is not an UpperCamelCase identifier.
    #[error(
        "`{0}` is not a type name: use UpperCamelCase letters and digits, as in `Invoice` or \
         `PurchaseOrder`, whose module name (`purchase_order`) is not a Rust keyword"
    )]
    TypeName(String),
    /// `src/lib.rs` declares a module of that name already.
    #[error("`{}` declares a module `{module}` already: choose another name", lib.display())]
    Declared {
        /// The module's name.
        module: String,
        /// The file declaring it.
        lib: PathBuf,
    },
    /// Something is in the way.
    #[error("`{0}` exists already: choose another name or remove it")]
    Exists(PathBuf),
    /// The directory is not a project made by `composable new` (no `src/lib.rs`).
    #[error("`{0}` has no `src/lib.rs`: run this in a project made by `composable new <app>`")]
    NotAProject(PathBuf),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: io::Error,
    },
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The files created, or changed (`src/lib.rs` when a module was added).
    pub files: Vec<PathBuf>,
    /// Whether rustfmt formatted the Rust files (names change line lengths); `false` when it
    /// could not be run, and `cargo fmt` should be.
    pub formatted: bool,
}

impl Written {
    /// `files` written; the Rust files among the first `new` of them, which this tool wrote
    /// whole, formatted (a file it only added a line to is left as the user formats it:
    /// rustfmt on `lib.rs` would reformat every module it declares).
    fn formatted(files: Vec<PathBuf>, new: usize) -> Self {
        let rust: Vec<&PathBuf> = files[..new.min(files.len())]
            .iter()
            .filter(|file| file.extension().is_some_and(|e| e == "rs"))
            .collect();
        let formatted = rust.is_empty()
            || Command::new("rustfmt")
                .args(["--edition", "2024"])
                .args(&rust)
                .output()
                .is_ok_and(|output| output.status.success());
        Self { files, formatted }
    }
}

impl fmt::Display for Written {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for file in &self.files {
            writeln!(f, "  {}", file.display())?;
        }
        if !self.formatted {
            writeln!(f, "rustfmt could not be run on them: run `cargo fmt`")?;
        }
        Ok(())
    }
}

const APP: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../templates/app/Cargo.toml")),
    ("README.md", include_str!("../templates/app/README.md")),
    ("rustfmt.toml", include_str!("../templates/app/rustfmt.toml")),
    ("src/lib.rs", include_str!("../templates/app/src/lib.rs")),
    ("src/main.rs", include_str!("../templates/app/src/main.rs")),
    ("src/order.rs", include_str!("../templates/app/src/order.rs")),
    ("src/shipping.rs", include_str!("../templates/app/src/shipping.rs")),
    ("src/board.rs", include_str!("../templates/app/src/board.rs")),
    ("src/services.rs", include_str!("../templates/app/src/services.rs")),
    ("tests/app.rs", include_str!("../templates/app/tests/app.rs")),
];

const AGGREGATE: &str = include_str!("../templates/parts/aggregate.rs");
const SAGA: &str = include_str!("../templates/parts/saga.rs");

/// Creates application `name` in directory `into/name`: an aggregate, a saga, a projection and
/// the host running them in memory, with their tests.
///
/// # Errors
/// A bad name, a directory in the way, a file that cannot be written.
pub fn app(into: &Path, name: &str, source: &Source) -> Result<Written, NewError> {
    if !is_app_name(name) {
        return Err(NewError::AppName(name.to_owned()));
    }
    let root = into.join(name);
    if root.exists() {
        return Err(NewError::Exists(root));
    }
    let crate_name = name.replace('-', "_");
    let fill = |template: &str| {
        template
            .replace("{{app}}", name)
            .replace("{{app_crate}}", &crate_name)
            .replace("{{composable}}", &source.dependency("composable", "composable", ""))
            .replace(
                "{{composable_testing}}",
                &source.dependency("composable", "composable", "features = [\"testing\"]"),
            )
            .replace(
                "{{composable_postgres}}",
                &source.dependency("composable-postgres", "backends/postgres", "optional = true"),
            )
            .replace(
                "{{composable_kafka}}",
                &source.dependency("composable-kafka", "backends/kafka", "optional = true"),
            )
    };
    let mut files = Vec::new();
    for (path, template) in APP {
        let path = root.join(path);
        write(&path, &fill(template))?;
        files.push(path);
    }
    let new = files.len();
    Ok(Written::formatted(files, new))
}

/// Adds aggregate `name` to the project in `project`: `src/{name}.rs`, with its tests, declared
/// in `src/lib.rs`.
///
/// # Errors
/// A bad name, no project there, a module of that name already, a file that cannot be written.
pub fn aggregate(project: &Path, name: &str) -> Result<Written, NewError> {
    module(project, name, AGGREGATE)
}

/// Adds saga `name` to the project in `project`: `src/{name}.rs`, with its tests, declared in
/// `src/lib.rs`.
///
/// # Errors
/// As [`aggregate`].
pub fn saga(project: &Path, name: &str) -> Result<Written, NewError> {
    module(project, name, SAGA)
}

fn module(project: &Path, name: &str, template: &str) -> Result<Written, NewError> {
    if !is_type_name(name) {
        return Err(NewError::TypeName(name.to_owned()));
    }
    let lib = project.join("src/lib.rs");
    if !lib.is_file() {
        return Err(NewError::NotAProject(project.to_owned()));
    }
    let snake = snake_case(name);
    let file = project.join("src").join(format!("{snake}.rs"));
    if file.exists() {
        return Err(NewError::Exists(file));
    }
    let directory_module = project.join("src").join(&snake).join("mod.rs");
    if directory_module.exists() {
        return Err(NewError::Exists(directory_module));
    }
    let declaration = format!("pub mod {snake};");
    let lib_text =
        fs::read_to_string(&lib).map_err(|source| NewError::Io { path: lib.clone(), source })?;
    // `mod x;`, `pub mod x;`, `pub(crate) mod x;`: a module of that name in any form.
    let declared = lib_text.lines().any(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        words.windows(2).any(|pair| pair[0] == "mod" && pair[1] == format!("{snake};"))
    });
    if declared {
        return Err(NewError::Declared { module: snake, lib });
    }
    let code = template
        .replace("{{Name}}", name)
        .replace("{{snake}}", &snake)
        .replace("{{words}}", &snake.replace('_', " "));
    write(&file, &code)?;
    write(&lib, &with_module(&lib_text, &declaration))?;
    Ok(Written::formatted(vec![file, lib], 1))
}

/// `lib` with `declaration` among its `pub mod` lines, in the order rustfmt keeps them (by
/// name), or at its end when it has none.
fn with_module(lib: &str, declaration: &str) -> String {
    let mut lines: Vec<&str> = lib.lines().collect();
    let modules: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, line)| line.starts_with("pub mod "))
        .map(|(index, _)| index)
        .collect();
    let mut at = match (modules.first(), modules.last()) {
        (Some(&first), Some(&last)) => (first..=last)
            .find(|&index| lines[index].starts_with("pub mod ") && lines[index] > declaration)
            .unwrap_or(last + 1),
        _ => lines.len(),
    };
    // Before the attributes and doc comments of the module it goes ahead of, not between them
    // and their module.
    while at > 0 && (lines[at - 1].starts_with("#[") || lines[at - 1].starts_with("///")) {
        at -= 1;
    }
    lines.insert(at, declaration);
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

fn write(path: &Path, text: &str) -> Result<(), NewError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .map_err(|source| NewError::Io { path: parent.to_owned(), source })?;
    }
    fs::write(path, text).map_err(|source| NewError::Io { path: path.to_owned(), source })
}

/// Rust's keywords, strict and reserved (edition 2024): no crate or module can be named so.
const KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate",
    "do", "dyn", "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl",
    "in", "let", "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref",
    "return", "self", "static", "struct", "super", "trait", "true", "try", "type", "typeof",
    "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

/// Crate names a generated application can't take: the ones it depends on, or the standard
/// library's.
const TAKEN: &[&str] = &["composable", "alloc", "core", "proc_macro", "std", "test"];

fn is_app_name(name: &str) -> bool {
    let mut chars = name.chars();
    let crate_name = name.replace('-', "_");
    chars.next().is_some_and(|first| first.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.len() <= 64
        && !KEYWORDS.contains(&crate_name.as_str())
        && !TAKEN.contains(&crate_name.as_str())
        && !crate_name.starts_with("composable_")
}

fn is_type_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|first| first.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_alphanumeric())
        && name.len() <= 64
        && name != "Self"
        && !KEYWORDS.contains(&snake_case(name).as_str())
}

/// `PurchaseOrder` → `purchase_order`.
fn snake_case(name: &str) -> String {
    let mut snake = String::with_capacity(name.len() + 4);
    for (index, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if index > 0 {
                snake.push('_');
            }
            snake.push(c.to_ascii_lowercase());
        } else {
            snake.push(c);
        }
    }
    snake
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_anything_is_written() {
        assert!(is_app_name("shop") && is_app_name("order-service") && is_app_name("a1_b"));
        for bad in [
            "",
            "Shop",
            "1shop",
            "shop/../../etc",
            "shop;rm",
            "shop app",
            "é",
            "type",
            "self",
            "gen",
            "composable",
            "composable-kafka",
            "std",
        ] {
            assert!(!is_app_name(bad), "{bad:?}");
        }
        assert!(is_type_name("Invoice") && is_type_name("PurchaseOrder2"));
        for bad in [
            "",
            "invoice",
            "Purchase_Order",
            "Invoice<T>",
            "In voice",
            "Ünïcode",
            "Return",
            "Type",
            "Self",
            "Gen",
            "Match",
        ] {
            assert!(!is_type_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn type_names_become_module_and_stream_names() {
        assert_eq!(snake_case("Invoice"), "invoice");
        assert_eq!(snake_case("PurchaseOrder"), "purchase_order");
    }

    #[test]
    fn a_module_is_declared_in_order_among_the_others() {
        let lib = "//! app\n\npub mod board;\npub mod order;\n\nuse std::sync::Arc;\n";
        assert_eq!(
            with_module(lib, "pub mod invoice;"),
            "//! app\n\npub mod board;\npub mod invoice;\npub mod order;\n\nuse std::sync::Arc;\n"
        );
        assert_eq!(
            with_module(lib, "pub mod shipping;"),
            "//! app\n\npub mod board;\npub mod order;\npub mod shipping;\n\nuse std::sync::Arc;\n"
        );
        assert_eq!(with_module("//! app\n", "pub mod invoice;"), "//! app\npub mod invoice;\n");
        let documented = "pub mod board;\n/// The orders.\npub mod order;\n";
        assert_eq!(
            with_module(documented, "pub mod invoice;"),
            "pub mod board;\npub mod invoice;\n/// The orders.\npub mod order;\n"
        );
        let gated = "pub mod order;\n#[cfg(feature = \"services\")]\npub mod services;\n";
        assert_eq!(
            with_module(gated, "pub mod purchase_order;"),
            "pub mod order;\npub mod purchase_order;\n#[cfg(feature = \"services\")]\npub mod services;\n"
        );
    }
}
