  ;; --- filer kit: memory, a bump allocator reset after every call -------------------
  (memory (export "memory") 1)
  (global $base i32 (i32.const 4096))
  (global $heap (mut i32) (i32.const 4096))
  (func $realloc (export "cabi_realloc")
        (param $old i32) (param $old_size i32) (param $align i32) (param $new_size i32)
        (result i32)
    (local $ptr i32) (local $end i32) (local $have i32)
    (local.set $ptr
      (i32.and (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
               (i32.sub (i32.const 0) (local.get $align))))
    (local.set $end (i32.add (local.get $ptr) (local.get $new_size)))
    (local.set $have (i32.shl (memory.size) (i32.const 16)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.eq
              (memory.grow (i32.shr_u (i32.add (i32.sub (local.get $end) (local.get $have))
                                               (i32.const 65535))
                                      (i32.const 16)))
              (i32.const -1))
          (then unreachable))))
    (if (local.get $old)
      (then (memory.copy (local.get $ptr) (local.get $old) (local.get $old_size))))
    (global.set $heap (local.get $end))
    (local.get $ptr))
  ;; Everything a call allocated (its arguments, its answer) is dead once the host has
  ;; read the answer.
  (func (export "cabi_post_tessera:plugin/filing@0.1.0#stage-in") (param i32)
    (global.set $heap (global.get $base)))
  (func (export "cabi_post_tessera:plugin/filing@0.1.0#stage-out") (param i32)
    (global.set $heap (global.get $base)))
  ;; result<list<staged-file>, plugin-error>: ok, the list at ptr/len (at 4 and 8).
  (func $ok_list (param $ptr i32) (param $len i32) (result i32)
    (local $ret i32)
    (local.set $ret (call $realloc (i32.const 0) (i32.const 0) (i32.const 4) (i32.const 16)))
    (i32.store8 (local.get $ret) (i32.const 0))
    (i32.store offset=4 (local.get $ret) (local.get $ptr))
    (i32.store offset=8 (local.get $ret) (local.get $len))
    (local.get $ret))
  ;; result<list<staged-file>, plugin-error>: err, plugin-error case `kind` (0
  ;; invalid-input, 1 unavailable, 2 denied, 3 not-found, 4 other; u8 at 4) with the
  ;; string at ptr/len (at 8 and 12).
  (func $err (param $kind i32) (param $ptr i32) (param $len i32) (result i32)
    (local $ret i32)
    (local.set $ret (call $realloc (i32.const 0) (i32.const 0) (i32.const 4) (i32.const 16)))
    (i32.store8 (local.get $ret) (i32.const 1))
    (i32.store8 offset=4 (local.get $ret) (local.get $kind))
    (i32.store offset=8 (local.get $ret) (local.get $ptr))
    (i32.store offset=12 (local.get $ret) (local.get $len))
    (local.get $ret))
  ;; Passes on the plugin-error of a result<_, plugin-error> at $ret whose payload is at 4
  ;; (what workspace calls return).
  (func $pass_err (param $ret i32) (result i32)
    (call $err (i32.load8_u offset=4 (local.get $ret))
               (i32.load offset=8 (local.get $ret)) (i32.load offset=12 (local.get $ret))))
  ;; ok with one staged-file (align 8, 24 bytes: url ptr 0, len 4; path ptr 8, len 12;
  ;; size u64 at 16).
  (func $one (param $url i32) (param $url_len i32) (param $path i32) (param $path_len i32)
             (param $size i64) (result i32)
    (local $f i32)
    (local.set $f (call $realloc (i32.const 0) (i32.const 0) (i32.const 8) (i32.const 24)))
    (i32.store (local.get $f) (local.get $url))
    (i32.store offset=4 (local.get $f) (local.get $url_len))
    (i32.store offset=8 (local.get $f) (local.get $path))
    (i32.store offset=12 (local.get $f) (local.get $path_len))
    (i64.store offset=16 (local.get $f) (local.get $size))
    (call $ok_list (local.get $f) (i32.const 1)))
  ;; Both exports take (string, string, file-kind): ptr, len, ptr, len, kind (0 file,
  ;; 1 directory); stage-in (url, path, kind), stage-out (path, url, kind).
