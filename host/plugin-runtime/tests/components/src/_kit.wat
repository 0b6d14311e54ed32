  ;; --- kit: memory, a bump allocator reset after every call -------------------------
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
  (func (export "cabi_post_tessera:plugin/routing@0.1.0#route") (param i32)
    (global.set $heap (global.get $base)))
  ;; result<list<decision>, plugin-error>: ok, with `n` decisions at `list`.
  (func $ok (param $list i32) (param $n i32) (result i32)
    (local $ret i32)
    (local.set $ret (call $realloc (i32.const 0) (i32.const 0) (i32.const 4) (i32.const 16)))
    (i32.store8 (local.get $ret) (i32.const 0))
    (i32.store offset=4 (local.get $ret) (local.get $list))
    (i32.store offset=8 (local.get $ret) (local.get $n))
    (local.get $ret))
  ;; `n` decisions (variant decision: case u8 at 0, then assign's u32 at 4, or defer's
  ;; string as ptr at 4 and len at 8; 12 bytes each), all the same.
  (func $all (param $n i32) (param $tag i32) (param $ptr i32) (param $len i32) (result i32)
    (local $list i32) (local $i i32) (local $d i32)
    (local.set $list
      (call $realloc (i32.const 0) (i32.const 0) (i32.const 4) (i32.mul (local.get $n) (i32.const 12))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $d (i32.add (local.get $list) (i32.mul (local.get $i) (i32.const 12))))
        (i32.store8 (local.get $d) (local.get $tag))
        (i32.store offset=4 (local.get $d) (local.get $ptr))
        (i32.store offset=8 (local.get $d) (local.get $len))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (local.get $list))
  ;; `n` decisions assign(`target`).
  (func $assign_all (param $n i32) (param $target i32) (result i32)
    (call $all (local.get $n) (i32.const 0) (local.get $target) (i32.const 0)))
  ;; `n` decisions defer(the string at ptr/len).
  (func $defer_all (param $n i32) (param $ptr i32) (param $len i32) (result i32)
    (call $all (local.get $n) (i32.const 1) (local.get $ptr) (local.get $len)))
