;; A filer over the object store, for tests: the URL is the bucket, the path the key.
;; Needs `object-store`.
;; stage-in FILE: head, ok([{url: the object's key, path, size: its size}]).
;; stage-in DIRECTORY: puts the key's own bytes as the object (put, body,
;; blocking-write-and-flush, finish), ok([{url: key, path, size: the stored size}]).
;; stage-out: get, and the first bytes that come (at most 4096) as the staged file's url.
;; A store-error becomes the plugin-error of the same name (not-found: "not-found").
(module
  (import "tessera:plugin/object-store@0.1.0" "head" (func $head (param i32 i32 i32 i32 i32)))
  (import "tessera:plugin/object-store@0.1.0" "get" (func $get (param i32 i32 i32 i32 i32)))
  (import "tessera:plugin/object-store@0.1.0" "put"
    (func $put (param i32 i32 i32 i32 i64 i32)))
  (import "tessera:plugin/object-store@0.1.0" "[method]upload.body" (func $body (param i32 i32)))
  (import "tessera:plugin/object-store@0.1.0" "[static]upload.finish"
    (func $finish (param i32 i32)))
  (import "wasi:io/streams@0.2.12" "[method]output-stream.blocking-write-and-flush"
    (func $write (param i32 i32 i32 i32)))
  (import "wasi:io/streams@0.2.12" "[method]input-stream.blocking-read"
    (func $read (param i32 i64 i32)))
  (import "wasi:io/streams@0.2.12" "[resource-drop]output-stream" (func $drop_out (param i32)))
  ;;KIT
  (data (i32.const 16) "not-found")
  (data (i32.const 32) "write failed")
  ;; The store-error at $at (case u8; string at +4/+8) as this call's plugin-error.
  ;; store-error: 0 not-found, 1 denied, 2 invalid-input, 3 unavailable, 4 other.
  (func $store_err (param $at i32) (result i32)
    (local $case i32)
    (local.set $case (i32.load8_u (local.get $at)))
    (if (i32.eqz (local.get $case))
      (then (return (call $err (i32.const 3) (i32.const 16) (i32.const 9)))))
    (call $err
      (if (result i32) (i32.eq (local.get $case) (i32.const 1))
        (then (i32.const 2))
        (else
          (if (result i32) (i32.eq (local.get $case) (i32.const 2))
            (then (i32.const 0))
            (else
              (if (result i32) (i32.eq (local.get $case) (i32.const 3))
                (then (i32.const 1))
                (else (i32.const 4)))))))
      (i32.load offset=4 (local.get $at)) (i32.load offset=8 (local.get $at))))
  (func (export "tessera:plugin/filing@0.1.0#stage-in")
        (param $url i32) (param $url_len i32) (param $path i32) (param $path_len i32)
        (param $kind i32) (result i32)
    (local $ret i32) (local $up i32) (local $out i32)
    (local.set $ret (call $realloc (i32.const 0) (i32.const 0) (i32.const 8) (i32.const 64)))
    (if (i32.eqz (local.get $kind))
      (then
        ;; result<object-info, store-error>: payload at 8; object-info: key ptr 8,
        ;; len 12, size u64 at 16.
        (call $head (local.get $url) (local.get $url_len) (local.get $path) (local.get $path_len)
                    (local.get $ret))
        (if (i32.load8_u (local.get $ret))
          (then (return (call $store_err (i32.add (local.get $ret) (i32.const 8))))))
        (return (call $one (i32.load offset=8 (local.get $ret)) (i32.load offset=12 (local.get $ret))
                           (local.get $path) (local.get $path_len)
                           (i64.load offset=16 (local.get $ret))))))
    ;; result<upload, store-error>: payload at 4.
    (call $put (local.get $url) (local.get $url_len) (local.get $path) (local.get $path_len)
               (i64.extend_i32_u (local.get $path_len)) (local.get $ret))
    (if (i32.load8_u (local.get $ret))
      (then (return (call $store_err (i32.add (local.get $ret) (i32.const 4))))))
    (local.set $up (i32.load offset=4 (local.get $ret)))
    (call $body (local.get $up) (local.get $ret))
    (if (i32.load8_u (local.get $ret))
      (then (return (call $store_err (i32.add (local.get $ret) (i32.const 4))))))
    (local.set $out (i32.load offset=4 (local.get $ret)))
    (call $write (local.get $out) (local.get $path) (local.get $path_len) (local.get $ret))
    (if (i32.load8_u (local.get $ret))
      (then (return (call $err (i32.const 4) (i32.const 32) (i32.const 12)))))
    (call $drop_out (local.get $out))
    ;; result<u64, store-error>: payload at 8.
    (call $finish (local.get $up) (local.get $ret))
    (if (i32.load8_u (local.get $ret))
      (then (return (call $store_err (i32.add (local.get $ret) (i32.const 8))))))
    (call $one (local.get $path) (local.get $path_len) (local.get $path) (local.get $path_len)
               (i64.load offset=8 (local.get $ret))))
  (func (export "tessera:plugin/filing@0.1.0#stage-out")
        (param $path i32) (param $path_len i32) (param $url i32) (param $url_len i32)
        (param $kind i32) (result i32)
    (local $ret i32) (local $in i32)
    (local.set $ret (call $realloc (i32.const 0) (i32.const 0) (i32.const 8) (i32.const 64)))
    ;; result<input-stream, store-error>: payload at 4.
    (call $get (local.get $url) (local.get $url_len) (local.get $path) (local.get $path_len)
               (local.get $ret))
    (if (i32.load8_u (local.get $ret))
      (then (return (call $store_err (i32.add (local.get $ret) (i32.const 4))))))
    (local.set $in (i32.load offset=4 (local.get $ret)))
    (call $read (local.get $in) (i64.const 4096) (local.get $ret))
    (if (i32.load8_u (local.get $ret))
      (then (return (call $one (i32.const 0) (i32.const 0) (local.get $path) (local.get $path_len)
                               (i64.const 0)))))
    (call $one (i32.load offset=4 (local.get $ret)) (i32.load offset=8 (local.get $ret))
               (local.get $path) (local.get $path_len)
               (i64.extend_i32_u (i32.load offset=8 (local.get $ret))))))
