;; Uses `log` and `config`: logs one line per call, assigns every task to the target
;; whose index is the first digit of config key "target" (defers when unset), and when
;; the secret "token" is readable defers instead, with the secret as the reason (so tests
;; can see whether the host handed it over).
(module
  (import "tessera:plugin/log@0.1.0" "log" (func $log (param i32 i32 i32)))
  (import "tessera:plugin/config@0.1.0" "get" (func $get (param i32 i32 i32)))
  (import "tessera:plugin/config@0.1.0" "secret" (func $secret (param i32 i32 i32)))
  ;;KIT
  (data (i32.const 16) "target")
  (data (i32.const 32) "token")
  (data (i32.const 48) "routing with the configured target")
  (data (i32.const 96) "no target configured")
  (func (export "tessera:plugin/routing@0.1.0#route")
        (param i32 i32) (param $tasks i32) (param $ntasks i32) (param i32 i32) (result i32)
    (local $opt i32)
    (call $log (i32.const 2) (i32.const 48) (i32.const 34))   ;; info
    (local.set $opt (call $realloc (i32.const 0) (i32.const 0) (i32.const 4) (i32.const 12)))
    (call $secret (i32.const 32) (i32.const 5) (local.get $opt))
    (if (i32.load8_u (local.get $opt))
      (then
        (return (call $ok
          (call $defer_all (local.get $ntasks)
                           (i32.load offset=4 (local.get $opt)) (i32.load offset=8 (local.get $opt)))
          (local.get $ntasks)))))
    (call $get (i32.const 16) (i32.const 6) (local.get $opt))
    (if (result i32) (i32.load8_u (local.get $opt))
      (then
        ;; the value's first byte, as a digit
        (call $ok
          (call $assign_all (local.get $ntasks)
                            (i32.sub (i32.load8_u (i32.load offset=4 (local.get $opt)))
                                     (i32.const 48)))
          (local.get $ntasks)))
      (else
        (call $ok (call $defer_all (local.get $ntasks) (i32.const 96) (i32.const 20))
                  (local.get $ntasks))))))
