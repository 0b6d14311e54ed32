;; A notifier that talks back: logs the task id and the new state at info, succeeds
;; when the event has no reason, and fails with unavailable(reason) when it has one (so
;; tests see the event arrive as laid out, and a plugin error come back).
(module
  (import "tessera:plugin/log@0.1.0" "log" (func $log (param i32 i32 i32)))
  ;;KIT
  (func (export "tessera:plugin/notify@0.1.0#deliver") (param $event i32) (result i32)
    (call $log (i32.const 2) (i32.load (local.get $event)) (i32.load offset=4 (local.get $event)))
    (call $log (i32.const 2) (i32.load offset=92 (local.get $event))
                             (i32.load offset=96 (local.get $event)))
    (if (result i32) (i32.load8_u offset=108 (local.get $event))
      (then (call $err (i32.const 1) (i32.load offset=112 (local.get $event))
                                     (i32.load offset=116 (local.get $event))))
      (else (call $ok)))))
