;; Blocks in a host call: waits a minute on a monotonic-clock pollable (needs `http`,
;; which brings wasi:clocks and wasi:io/poll).
(module
  (import "wasi:clocks/monotonic-clock@0.2.12" "subscribe-duration"
    (func $after (param i64) (result i32)))
  (import "wasi:io/poll@0.2.12" "[method]pollable.block" (func $block (param i32)))
  ;;KIT
  (func (export "tessera:plugin/notify@0.1.0#deliver") (param i32) (result i32)
    (call $block (call $after (i64.const 60000000000)))
    (call $ok)))
