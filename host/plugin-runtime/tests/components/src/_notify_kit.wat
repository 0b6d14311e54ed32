  ;; --- notifier kit: memory, a bump allocator reset after every call ----------------
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
  ;; Everything a call allocated (its argument, its answer) is dead once the host has
  ;; read the answer.
  (func (export "cabi_post_tessera:plugin/notify@0.1.0#deliver") (param i32)
    (global.set $heap (global.get $base)))
  ;; result<_, plugin-error>: ok.
  (func $ok (result i32)
    (local $ret i32)
    (local.set $ret (call $realloc (i32.const 0) (i32.const 0) (i32.const 4) (i32.const 16)))
    (i32.store8 (local.get $ret) (i32.const 0))
    (local.get $ret))
  ;; result<_, plugin-error>: err, plugin-error case `kind` (0 invalid-input,
  ;; 1 unavailable, 2 denied, 3 not-found, 4 other; u8 at 4) with the string at ptr/len
  ;; (at 8 and 12).
  (func $err (param $kind i32) (param $ptr i32) (param $len i32) (result i32)
    (local $ret i32)
    (local.set $ret (call $realloc (i32.const 0) (i32.const 0) (i32.const 4) (i32.const 16)))
    (i32.store8 (local.get $ret) (i32.const 1))
    (i32.store8 offset=4 (local.get $ret) (local.get $kind))
    (i32.store offset=8 (local.get $ret) (local.get $ptr))
    (i32.store offset=12 (local.get $ret) (local.get $len))
    (local.get $ret))
  ;; The `event` record that `deliver` gets a pointer to (align 8, 136 bytes):
  ;;   task.id            ptr 0, len 4
  ;;   task.name          option<string>: case 8, ptr 12, len 16
  ;;   task.tags          ptr 20, len 24 (pairs of strings, 16 bytes each)
  ;;   task.group         option<string>: case 28, ptr 32, len 36
  ;;   task.priority      s32 at 40
  ;;   task.cpu-cores     option<u32>: case 44, value 48
  ;;   task.ram-bytes     option<u64>: case 56, value 64
  ;;   task.created-at-ms u64 at 72
  ;;   from-state         option<string>: case 80, ptr 84, len 88
  ;;   to-state           ptr 92, len 96
  ;;   at                 ptr 100, len 104
  ;;   reason             option<string>: case 108, ptr 112, len 116
  ;;   notification-url   option<string>: case 120, ptr 124, len 128
