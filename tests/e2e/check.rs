//! Checking line files (`valtava check`): the expected diagnostics of every broken line file,
//! line files cut and damaged anywhere, two files of one line name, code sets pinned by
//! version and checksum, and that the shipped and test lines pass.

use std::collections::BTreeSet;

use super::*;

#[test]
fn broken_line_files_give_their_expected_diagnostics() {
    let dir = root().join("tests/lines/broken");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 15, "only {} broken line files", files.len());
    let mut codes = BTreeSet::new();
    for f in files {
        let rel = f
            .strip_prefix(root())
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let expected = std::fs::read_to_string(f.with_extension("expected"))
            .unwrap()
            .trim()
            .to_string();
        let out = run(&["check", "--format", "json", &rel]);
        assert_eq!(out.status.code(), Some(1), "{rel}: {}", text(&out.stderr));
        let diags: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{rel}: {e}: {}", text(&out.stdout)));
        let got: Vec<String> = diags
            .as_array()
            .unwrap()
            .iter()
            .map(|d| format!("{} {}:{}", d["code"].as_str().unwrap(), d["line"], d["col"]))
            .collect();
        assert_eq!(got.join(" | "), expected, "{rel}");
        for d in diags.as_array().unwrap() {
            assert_eq!(d["file"].as_str().unwrap(), rel);
            assert!(!d["message"].as_str().unwrap().is_empty());
            codes.insert(d["code"].as_str().unwrap().to_string());
        }
        // The human rendering names the place and shows the line with a caret.
        let human = run(&["check", &rel]);
        assert_eq!(human.status.code(), Some(1));
        let err = text(&human.stderr);
        let first = &diags[0];
        assert!(
            err.contains(&format!("--> {rel}:{}:{}", first["line"], first["col"])),
            "{err}"
        );
        assert!(err.contains(" | ") && err.contains('^'), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // Every kind the issue names is covered.
    for c in [
        "V001", "V002", "V003", "V005", "V102", "V103", "V104", "V201", "V202", "V301",
    ] {
        assert!(codes.contains(c), "no broken file exercises {c}");
    }
}

#[test]
fn shipped_and_test_lines_are_valid() {
    let mut lines: Vec<String> = std::fs::read_dir(root().join("lines"))
        .unwrap()
        .map(|e| format!("lines/{}", e.unwrap().file_name().to_string_lossy()))
        .filter(|p| p.ends_with(".yaml"))
        .collect();
    lines.sort();
    lines.push("tests/lines/mini.yaml".into());
    let mut args = vec!["check"];
    args.extend(lines.iter().map(String::as_str));
    let out = run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json = run(&["check", "--format", "json", "tests/lines/mini.yaml"]);
    assert_eq!(text(&json.stdout).trim(), "[]");
}

#[test]
fn two_files_of_one_line_name_fail_the_check() {
    let dir = tempfile::tempdir().unwrap();
    let shipped_text =
        std::fs::read_to_string(root().join("lines/henkilostomitoitus.yaml")).unwrap();
    let copy = dir.path().join("kopio.yaml");
    // The copy's code sets are read from the shipped line's folder.
    let shipped = root().join("lines").canonicalize().unwrap();
    std::fs::write(
        &copy,
        shipped_text.replace("path: ", &format!("path: {}/", shipped.display())),
    )
    .unwrap();
    let copy = copy.display().to_string();
    let alone = run(&["check", &copy]);
    assert_eq!(alone.status.code(), Some(0), "{}", text(&alone.stderr));
    let out = run(&[
        "check",
        "--format",
        "json",
        "lines/henkilostomitoitus.yaml",
        &copy,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d.as_array().unwrap().len(), 1, "{d}");
    assert_eq!(d[0]["code"], "V104");
    assert_eq!(d[0]["file"], copy.as_str());
    assert!(
        d[0]["message"]
            .as_str()
            .unwrap()
            .contains("also defined in lines/henkilostomitoitus.yaml"),
        "{d}"
    );
}

#[test]
fn damaged_line_files_never_crash_check() {
    // Every prefix of real line files, cut at many points, is either valid or reported.
    for line in [
        "lines/ensihoito.yaml",
        "tests/lines/mini.yaml",
        "tests/lines/formats.yaml",
    ] {
        let source = std::fs::read_to_string(root().join(line)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let step = (source.len() / 40).max(1);
        let cuts: Vec<usize> = (0..source.len())
            .step_by(step)
            .filter(|&i| source.is_char_boundary(i))
            .collect();
        for cut in cuts {
            let f = dir.path().join("cut.yaml");
            let mut text_cut = source[..cut].to_string();
            // Also damage indentation in the middle of the file.
            text_cut.push_str("\n  : ]\n");
            std::fs::write(&f, &text_cut).unwrap();
            let out = run(&["check", "--format", "json", f.to_str().unwrap()]);
            let code = out.status.code();
            assert!(
                code == Some(0) || code == Some(1),
                "{line} cut at {cut}: {code:?} {}",
                text(&out.stderr)
            );
            assert!(
                !text(&out.stderr).contains("panicked"),
                "{line} cut at {cut}"
            );
            if code == Some(1) {
                let diags: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                assert!(!diags.as_array().unwrap().is_empty());
            }
        }
    }
}

/// A FHIR view's path too long or too deep is a placed diagnostic, not a stack overflow
/// (a path of 60 000 steps crashed `check` before), and the message quotes only its start.
#[test]
fn a_huge_fhir_path_is_refused_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    for (name, path) in [
        ("long", format!("status{}", ".a".repeat(60_000))),
        ("deep", format!("status{}", ".a".repeat(300))),
    ] {
        let line = line_copy(
            dir.path(),
            "tests/lines/fhir.yaml",
            &format!("{name}.yaml"),
            &[("path: status }", &format!("path: \"{path}\" }}"))],
        );
        let out = run(&["check", "--format", "json", line.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", text(&out.stderr));
        let diags: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let d = &diags[0];
        assert_eq!(d["code"], "V107", "{name}: {d}");
        let message = d["message"].as_str().unwrap();
        assert!(message.contains("a path may"), "{name}: {message}");
        assert!(message.len() < 400, "{name}: {} bytes", message.len());
    }
}

#[test]
fn pinned_code_sets_refuse_other_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("lines")).unwrap();
    copy_dir(&root().join("tests/codesets"), &dir.path().join("codesets"));
    let line = std::fs::read_to_string(root().join("tests/lines/harmonise.yaml"))
        .unwrap()
        .replace("version: \"1.0.0\"", "version: \"2.0.0\"")
        .replace(
            "{ path: ../codesets/kunnat_muutos.csv, key: kunta }",
            "{ path: ../codesets/kunnat_muutos.csv, key: kunta, sha256: \"00\" }",
        );
    let file = dir.path().join("lines/pinned.yaml");
    std::fs::write(&file, line).unwrap();
    let out = run(&["check", "--format", "json", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let diags: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let msgs: Vec<String> = diags
        .as_array()
        .unwrap()
        .iter()
        .map(|d| format!("{} {}", d["code"], d["message"]))
        .collect();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(
        msgs.iter()
            .any(|m| m.contains("V305") && m.contains("has changed")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.contains("V305") && m.contains("is version 1.0.0, not 2.0.0")),
        "{msgs:?}"
    );
}

#[test]
fn parts_of_a_period_that_it_may_lack_or_is_itself_are_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let (months, quarters) = period_part_lines(dir.path());
    for (line, needle) in [
        (&months, "the months of a month are the month itself"),
        (&quarters, "may be a month, which has no quarters"),
    ] {
        let out = run(&["check", "--format", "json", line.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
        let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(d.as_array().unwrap().len(), 1, "{d}");
        assert_eq!(d[0]["code"], "V306");
        assert_eq!(d[0]["level"], "warning");
        assert!(d[0]["message"].as_str().unwrap().contains(needle), "{d}");
    }
    let human = run(&["check", months.to_str().unwrap()]);
    let err = text(&human.stderr);
    assert!(
        err.contains("warning[V306/period-part]") && err.contains("write `{period}`"),
        "{err}"
    );
}
