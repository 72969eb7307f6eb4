//! Empty: the package exists for its dependencies' sources (see Cargo.toml and build.sh).
