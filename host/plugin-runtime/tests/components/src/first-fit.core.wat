;; Assigns every task to the first target (defers when there is none). Traps when the
;; first task's priority is 666, so tests can make it trap on demand.
(module
  ;;KIT
  (data (i32.const 16) "no targets")
  ;; route(request): labels, tasks, targets, each a (pointer, length) pair.
  (func (export "tessera:plugin/routing@0.1.0#route")
        (param $labels i32) (param $nlabels i32)
        (param $tasks i32) (param $ntasks i32)
        (param $targets i32) (param $ntargets i32)
        (result i32)
    ;; task.priority (s32) is at offset 8, after needs (u64)
    (if (i32.and (i32.gt_u (local.get $ntasks) (i32.const 0))
                 (i32.eq (i32.load offset=8 (local.get $tasks)) (i32.const 666)))
      (then unreachable))
    (if (result i32) (local.get $ntargets)
      (then
        (call $ok (call $assign_all (local.get $ntasks) (i32.const 0)) (local.get $ntasks)))
      (else
        (call $ok (call $defer_all (local.get $ntasks) (i32.const 16) (i32.const 10))
                  (local.get $ntasks))))))
