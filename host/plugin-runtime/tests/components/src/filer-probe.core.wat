;; A filer that works the workspace directly, for tests. Needs `workspace`.
;; stage-in writes the URL's own bytes (at most 4096) to the file at `path` (open-write)
;; and stages that file. stage-out of a FILE reads the first 4096 bytes of `path`
;; (open-read) and returns them as the staged file's url; of a DIRECTORY, walk(path),
;; one staged file per entry with its relative path as url. Errors of the workspace are
;; passed on as they come.
(module
  (import "tessera:plugin/workspace@0.1.0" "open-read" (func $open_read (param i32 i32 i32)))
  (import "tessera:plugin/workspace@0.1.0" "open-write" (func $open_write (param i32 i32 i32)))
  (import "tessera:plugin/workspace@0.1.0" "walk" (func $walk (param i32 i32 i32)))
  (import "wasi:io/streams@0.2.12" "[method]output-stream.blocking-write-and-flush"
    (func $write (param i32 i32 i32 i32)))
  (import "wasi:io/streams@0.2.12" "[method]input-stream.blocking-read"
    (func $read (param i32 i64 i32)))
  (import "wasi:io/streams@0.2.12" "[resource-drop]output-stream" (func $drop_out (param i32)))
  (import "wasi:io/streams@0.2.12" "[resource-drop]input-stream" (func $drop_in (param i32)))
  ;;KIT
  (data (i32.const 16) "write failed")
  (func (export "tessera:plugin/filing@0.1.0#stage-in")
        (param $url i32) (param $url_len i32) (param $path i32) (param $path_len i32)
        (param $kind i32) (result i32)
    (local $ret i32) (local $out i32)
    ;; result<output-stream, plugin-error>: case at 0, the stream (or the error) at 4.
    (local.set $ret (call $realloc (i32.const 0) (i32.const 0) (i32.const 8) (i32.const 24)))
    (call $open_write (local.get $path) (local.get $path_len) (local.get $ret))
    (if (i32.load8_u (local.get $ret)) (then (return (call $pass_err (local.get $ret)))))
    (local.set $out (i32.load offset=4 (local.get $ret)))
    (call $write (local.get $out) (local.get $url) (local.get $url_len) (local.get $ret))
    (if (i32.load8_u (local.get $ret))
      (then (return (call $err (i32.const 4) (i32.const 16) (i32.const 12)))))
    (call $drop_out (local.get $out))
    (call $one (local.get $url) (local.get $url_len) (local.get $path) (local.get $path_len)
               (i64.extend_i32_u (local.get $url_len))))
  (func (export "tessera:plugin/filing@0.1.0#stage-out")
        (param $path i32) (param $path_len i32) (param $url i32) (param $url_len i32)
        (param $kind i32) (result i32)
    (local $ret i32) (local $in i32) (local $n i32) (local $list i32) (local $i i32)
    (local $e i32) (local $f i32)
    (local.set $ret (call $realloc (i32.const 0) (i32.const 0) (i32.const 8) (i32.const 24)))
    (if (local.get $kind)
      (then
        ;; result<list<entry>, plugin-error>: the list at 4/8; an entry is 16 bytes
        ;; (relative-path ptr 0, len 4; size u64 at 8).
        (call $walk (local.get $path) (local.get $path_len) (local.get $ret))
        (if (i32.load8_u (local.get $ret)) (then (return (call $pass_err (local.get $ret)))))
        (local.set $e (i32.load offset=4 (local.get $ret)))
        (local.set $n (i32.load offset=8 (local.get $ret)))
        (local.set $list (call $realloc (i32.const 0) (i32.const 0) (i32.const 8)
                                        (i32.mul (local.get $n) (i32.const 24))))
        (local.set $f (local.get $list))
        (block $done
          (loop $next
            (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
            (i32.store (local.get $f) (i32.load (local.get $e)))
            (i32.store offset=4 (local.get $f) (i32.load offset=4 (local.get $e)))
            (i32.store offset=8 (local.get $f) (local.get $path))
            (i32.store offset=12 (local.get $f) (local.get $path_len))
            (i64.store offset=16 (local.get $f) (i64.load offset=8 (local.get $e)))
            (local.set $e (i32.add (local.get $e) (i32.const 16)))
            (local.set $f (i32.add (local.get $f) (i32.const 24)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $next)))
        (return (call $ok_list (local.get $list) (local.get $n)))))
    (call $open_read (local.get $path) (local.get $path_len) (local.get $ret))
    (if (i32.load8_u (local.get $ret)) (then (return (call $pass_err (local.get $ret)))))
    (local.set $in (i32.load offset=4 (local.get $ret)))
    ;; result<list<u8>, stream-error>: the bytes at 4/8. Closed at once: an empty file.
    (call $read (local.get $in) (i64.const 4096) (local.get $ret))
    (if (i32.load8_u (local.get $ret))
      (then (return (call $one (i32.const 0) (i32.const 0) (local.get $path) (local.get $path_len)
                               (i64.const 0)))))
    (call $drop_in (local.get $in))
    (call $one (i32.load offset=4 (local.get $ret)) (i32.load offset=8 (local.get $ret))
               (local.get $path) (local.get $path_len)
               (i64.extend_i32_u (i32.load offset=8 (local.get $ret))))))
