;; Reads every part of the request, to check how the host lays it out. Each task goes to
;; the first target that holds every label the task needs and has a free slot (nothing
;; is counted down); a task no target holds is deferred with the last label's name as
;; the reason: a tag's value or a group's name ("" when there are no labels).
;;
;; Layouts (canonical ABI): task = {needs u64 @0, priority s32 @8, cpu-cores u32 @12,
;; ram-bytes u64 @16, queued-at-ms u64 @24}, 32 bytes; target = {holds u64 @0,
;; free-slots u32 @8, cpu-cores-free u32 @12, ram-bytes-free u64 @16}, 24 bytes; label =
;; variant {tag(tuple<string, string>), group(string)}: case u8 @0, then key (ptr, len)
;; @4 and value (ptr, len) @12 for a tag, name (ptr, len) @4 for a group; 20 bytes.
(module
  ;;KIT
  (func (export "tessera:plugin/routing@0.1.0#route")
        (param $labels i32) (param $nlabels i32)
        (param $tasks i32) (param $ntasks i32)
        (param $targets i32) (param $ntargets i32)
        (result i32)
    (local $list i32) (local $i i32) (local $j i32) (local $d i32) (local $needs i64)
    (local $t i32) (local $found i32) (local $last i32) (local $rptr i32) (local $rlen i32)
    ;; The reason: the last label's last string.
    (if (local.get $nlabels)
      (then
        (local.set $last (i32.add (local.get $labels)
                                  (i32.mul (i32.sub (local.get $nlabels) (i32.const 1))
                                           (i32.const 20))))
        (if (i32.load8_u (local.get $last))
          (then ;; group(name)
            (local.set $rptr (i32.load offset=4 (local.get $last)))
            (local.set $rlen (i32.load offset=8 (local.get $last))))
          (else ;; tag((key, value))
            (local.set $rptr (i32.load offset=12 (local.get $last)))
            (local.set $rlen (i32.load offset=16 (local.get $last)))))))
    (local.set $list
      (call $realloc (i32.const 0) (i32.const 0) (i32.const 4)
                     (i32.mul (local.get $ntasks) (i32.const 12))))
    (block $done
      (loop $task
        (br_if $done (i32.ge_u (local.get $i) (local.get $ntasks)))
        (local.set $needs (i64.load (i32.add (local.get $tasks)
                                             (i32.mul (local.get $i) (i32.const 32)))))
        (local.set $d (i32.add (local.get $list) (i32.mul (local.get $i) (i32.const 12))))
        (local.set $found (i32.const -1))
        (local.set $j (i32.const 0))
        (block $chosen
          (loop $target
            (br_if $chosen (i32.ge_u (local.get $j) (local.get $ntargets)))
            (local.set $t (i32.add (local.get $targets) (i32.mul (local.get $j) (i32.const 24))))
            ;; needs & !holds == 0, and a free slot
            (if (i32.and
                  (i64.eqz (i64.and (local.get $needs)
                                    (i64.xor (i64.load (local.get $t)) (i64.const -1))))
                  (i32.ne (i32.load offset=8 (local.get $t)) (i32.const 0)))
              (then
                (local.set $found (local.get $j))
                (br $chosen)))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $target)))
        (if (i32.ge_s (local.get $found) (i32.const 0))
          (then
            (i32.store8 (local.get $d) (i32.const 0))
            (i32.store offset=4 (local.get $d) (local.get $found)))
          (else
            (i32.store8 (local.get $d) (i32.const 1))
            (i32.store offset=4 (local.get $d) (local.get $rptr))
            (i32.store offset=8 (local.get $d) (local.get $rlen))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $task)))
    (call $ok (local.get $list) (local.get $ntasks))))
