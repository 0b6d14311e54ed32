;; Assigns every task to a target that does not exist: the index one past the last.
(module
  ;;KIT
  (func (export "tessera:plugin/routing@0.1.0#route")
        (param i32 i32) (param $tasks i32) (param $ntasks i32)
        (param $targets i32) (param $ntargets i32) (result i32)
    (call $ok (call $assign_all (local.get $ntasks) (local.get $ntargets))
              (local.get $ntasks))))
