use super::*;

/// A streaming parser that panics gives an error of its object, then ends.
#[test]
fn a_panicking_stream_becomes_an_error_of_its_object() {
    use futures::StreamExt;
    let panics: ParseStream =
        futures::stream::poll_fn(|_| -> std::task::Poll<_> { panic!("a defect") }).boxed();
    let got: Vec<_> = futures::executor::block_on(guarded(panics, "x.parquet".into()).collect());
    assert_eq!(got.len(), 1);
    let err = got.into_iter().next().unwrap().unwrap_err().to_string();
    assert!(err.contains("x.parquet") && err.contains("panic"), "{err}");
}

/// After the first batch, a batch's text is built in buffers sized from the one before:
/// not grown by doubling, which copies the text on the way and leaves up to half unused.
#[test]
fn batches_after_the_first_are_built_in_buffers_of_their_size() {
    use arrow::array::AsArray;
    let mut b = TextBatchBuilder::new(vec!["a".into(), "b".into()]);
    let text = "x".repeat(70);
    let mut batches = Vec::new();
    for batch in 0..3u64 {
        for row in 0..1000 {
            b.push_row(batch * 1000 + row, [Some(text.as_str()), None]);
        }
        batches.push(b.finish().unwrap().batch);
    }
    for batch in &batches[1..] {
        let a = batch.column(0).as_string::<i32>();
        assert_eq!(a.values().len(), 70_000);
        assert!(
            a.values().capacity() <= 70_000 * 5 / 4,
            "{}",
            a.values().capacity()
        );
        assert_eq!(batch.num_rows(), 1000);
    }
    let rows = batches[2]
        .column(2)
        .as_primitive::<arrow::datatypes::UInt64Type>();
    assert_eq!(rows.value(999), 2999);
}

#[test]
fn local_files_are_read_whole_in_order_and_a_missing_file_names_the_object() {
    use futures::{StreamExt, TryStreamExt};
    let dir = std::env::temp_dir().join(format!("valtava-read-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Three full chunks and a partial one, every byte telling its position.
    let data: Vec<u8> = (0..3 * FILE_CHUNK + 12345)
        .map(|i| (i % 251) as u8)
        .collect();
    std::fs::write(dir.join("big.bin"), &data).unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(object_store::local::LocalFileSystem::new_with_prefix(&dir).unwrap());
    let object = |name: &str| SourceObject {
        store: store.clone(),
        path: Path::from(name),
        size: data.len() as u64,
        name: name.into(),
    };
    let chunks: Vec<bytes::Bytes> = futures::executor::block_on(async {
        object("big.bin").open().await.unwrap().try_collect().await
    })
    .unwrap();
    assert_eq!(chunks.len(), 4);
    assert_eq!(chunks.concat(), data);
    let missing = futures::executor::block_on(async {
        match object("gone.bin").open().await {
            Ok(s) => s
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .find_map(Result::err),
            Err(e) => Some(e),
        }
    });
    assert!(missing.unwrap().to_string().contains("gone.bin"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A chunk's buffer is read into again once its bytes are dropped: an object of many
/// chunks, each dropped before the next is taken, is read through a few buffers.
#[test]
fn chunk_buffers_are_reused_once_their_bytes_are_dropped() {
    use futures::StreamExt;
    let dir = std::env::temp_dir().join(format!("valtava-reuse-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let chunks = 40;
    let data: Vec<u8> = (0..chunks * FILE_CHUNK + 777)
        .map(|i| (i % 253) as u8)
        .collect();
    std::fs::write(dir.join("big.bin"), &data).unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(object_store::local::LocalFileSystem::new_with_prefix(&dir).unwrap());
    let object = SourceObject {
        store,
        path: Path::from("big.bin"),
        size: data.len() as u64,
        name: "big.bin".into(),
    };
    let (read, buffers) = futures::executor::block_on(async {
        let mut s = object.open().await.unwrap();
        let (mut read, mut buffers) = (0, std::collections::BTreeSet::new());
        while let Some(chunk) = s.next().await {
            let chunk = chunk.unwrap();
            // Every byte where it belongs, also in a reused buffer.
            assert_eq!(&chunk[..], &data[read..read + chunk.len()]);
            read += chunk.len();
            buffers.insert(chunk.as_ptr() as usize);
        }
        (read, buffers)
    });
    assert_eq!(read, data.len());
    // Other tests may read files at the same time: their buffers count too, but not
    // one per chunk.
    let new = NEW_CHUNK_BUFFERS.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        buffers.len() <= 8 && new <= 16,
        "{} buffers at {} addresses for {} chunks",
        new,
        buffers.len(),
        chunks + 1
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn whole_objects_stream_their_batches_and_report_errors_and_panics() {
    use futures::StreamExt;
    use object_store::ObjectStoreExt;
    let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let path = Path::from("inbox/a.txt");
    futures::executor::block_on(store.put(&path, "x\ny\n".into())).unwrap();
    let object = || SourceObject {
        store: store.clone(),
        path: path.clone(),
        size: 4,
        name: "inbox/a.txt".into(),
    };
    let request = ParseRequest {
        columns: vec!["a".into()],
        types: vec![],
        options: serde_json::Value::Null,
        batch_size: 1,
        base_dir: None,
        limits: Limits::default(),
    };
    let collect = |s: ParseStream| futures::executor::block_on(s.collect::<Vec<_>>());
    // Two batches, one per line, then the parser's error naming the object.
    let got = collect(whole_object_streamed(
        object(),
        request.clone(),
        |bytes, _, emit| {
            for (i, line) in String::from_utf8_lossy(&bytes).lines().enumerate() {
                let mut b = TextBatchBuilder::new(vec!["a".into()]);
                b.push_row(i as u64 + 1, [Some(line)]);
                assert!(emit(b.finish().map_err(|e| e.to_string())?));
            }
            Err("broken after two lines".into())
        },
    ));
    assert_eq!(got.len(), 3);
    assert_eq!(got[1].as_ref().unwrap().batch.num_rows(), 1);
    let err = got[2].as_ref().unwrap_err().to_string();
    assert!(
        err.contains("inbox/a.txt") && err.contains("broken"),
        "{err}"
    );
    // A panic is an error, not a silent end of the rows.
    let got = collect(whole_object(object(), request, |_, _| panic!("boom")));
    assert_eq!(got.len(), 1);
    let err = got[0].as_ref().unwrap_err().to_string();
    assert!(
        err.contains("inbox/a.txt") && err.contains("panic"),
        "{err}"
    );
}

#[test]
fn builder_keeps_rows_and_rejects_apart() {
    let mut b = TextBatchBuilder::new(vec!["a".into()]);
    b.push_row(2, [Some("x")]);
    b.reject(3, "bad");
    b.push_row(4, [None]);
    assert_eq!(b.len(), 3);
    let p = b.finish().unwrap();
    assert_eq!(p.batch.num_rows(), 2);
    assert_eq!(
        p.rejects,
        vec![RowReject {
            row: 3,
            reason: "bad".into()
        }]
    );
    assert!(b.is_empty());
    assert!(p.batch.column(0).is_null(1));
}

#[test]
fn missing_options_are_defaults() {
    #[derive(serde::Deserialize, Default, PartialEq, Debug)]
    struct O {
        x: Option<u8>,
    }
    assert_eq!(
        typed_options::<O>(&serde_json::Value::Null).unwrap(),
        O::default()
    );
    assert!(typed_options::<O>(&serde_json::json!({"x": "no"})).is_err());
}
