;; An engine adapter for a pretend engine, so tests see every function's arguments
;; arrive and its answer come back as laid out:
;; - validate: logs the definition; an empty one is invalid-input("empty definition").
;; - submit: the first parameter's value is the run id; none is
;;   invalid-input("no parameters").
;; - status: a running run of two tasks, extract (succeeded, 1000..2000 ms, downstream
;;   load) and load (running since 2500 ms), both with the run's id as external id; an
;;   empty id is not-found("no such run").
;; - cancel: never returns (the call's deadline ends it).
;; - retry: ok with task ids, invalid-input("nothing to retry") without.
;; - logs: the log "line 1\nline 2\n" from byte `offset` on.
(module
  (import "tessera:plugin/log@0.1.0" "log" (func $log (param i32 i32 i32)))
  ;;KIT
  (data (i32.const 16) "extract")
  (data (i32.const 32) "load")
  ;; list<string> ["load"]: ptr 32, len 4.
  (data (i32.const 48) "\20\00\00\00\04\00\00\00")
  (data (i32.const 64) "empty definition")
  (data (i32.const 96) "no parameters")
  (data (i32.const 112) "nothing to retry")
  (data (i32.const 128) "no such run")
  (data (i32.const 192) "line 1\0aline 2\0a")

  (func (export "tessera:plugin/engine@0.1.0#validate") (param $ptr i32) (param $len i32) (result i32)
    (call $log (i32.const 2) (local.get $ptr) (local.get $len))
    (if (result i32) (local.get $len)
      (then (call $ok))
      (else (call $err (i32.const 0) (i32.const 64) (i32.const 16)))))

  ;; definition, parameters (list<pair>, 16 bytes each: name at 0/4, value at 8/12), labels.
  (func (export "tessera:plugin/engine@0.1.0#submit")
        (param i32 i32) (param $params i32) (param $count i32) (param i32 i32) (result i32)
    (if (result i32) (local.get $count)
      (then (call $ok_string (i32.load offset=8 (local.get $params))
                             (i32.load offset=12 (local.get $params))))
      (else (call $err (i32.const 0) (i32.const 96) (i32.const 13)))))

  ;; task-run (align 8, 64 bytes): task-id 0/4, external-id 8/12, state u8 16,
  ;; downstream 20/24, start-ms case 32 value 40, end-ms case 48 value 56.
  (func $task_run (param $at i32) (param $name i32) (param $name_len i32)
        (param $id i32) (param $id_len i32) (param $state i32)
        (param $down i32) (param $down_len i32) (param $start i64) (param $end i64)
    (i32.store (local.get $at) (local.get $name))
    (i32.store offset=4 (local.get $at) (local.get $name_len))
    (i32.store offset=8 (local.get $at) (local.get $id))
    (i32.store offset=12 (local.get $at) (local.get $id_len))
    (i32.store8 offset=16 (local.get $at) (local.get $state))
    (i32.store offset=20 (local.get $at) (local.get $down))
    (i32.store offset=24 (local.get $at) (local.get $down_len))
    (i32.store8 offset=32 (local.get $at) (i32.const 1))
    (i64.store offset=40 (local.get $at) (local.get $start))
    ;; end-ms: none when 0
    (i32.store8 offset=48 (local.get $at) (i64.ne (local.get $end) (i64.const 0)))
    (i64.store offset=56 (local.get $at) (local.get $end)))

  ;; result<run-status, plugin-error> (28 bytes): case 0; state u8 4, tasks 8/12,
  ;; message case 16, ptr 20, len 24.
  (func (export "tessera:plugin/engine@0.1.0#status") (param $id i32) (param $len i32) (result i32)
    (local $ret i32) (local $tasks i32)
    (if (i32.eqz (local.get $len))
      (then (return (call $err (i32.const 3) (i32.const 128) (i32.const 11)))))
    (local.set $tasks (call $realloc (i32.const 0) (i32.const 0) (i32.const 8) (i32.const 128)))
    (call $task_run (local.get $tasks) (i32.const 16) (i32.const 7) (local.get $id) (local.get $len)
                    (i32.const 2) (i32.const 48) (i32.const 1) (i64.const 1000) (i64.const 2000))
    (call $task_run (i32.add (local.get $tasks) (i32.const 64)) (i32.const 32) (i32.const 4)
                    (local.get $id) (local.get $len)
                    (i32.const 1) (i32.const 0) (i32.const 0) (i64.const 2500) (i64.const 0))
    (local.set $ret (call $realloc (i32.const 0) (i32.const 0) (i32.const 4) (i32.const 28)))
    (i32.store8 (local.get $ret) (i32.const 0))
    (i32.store8 offset=4 (local.get $ret) (i32.const 1))
    (i32.store offset=8 (local.get $ret) (local.get $tasks))
    (i32.store offset=12 (local.get $ret) (i32.const 2))
    (i32.store8 offset=16 (local.get $ret) (i32.const 0))
    (local.get $ret))

  (func (export "tessera:plugin/engine@0.1.0#cancel") (param i32 i32) (result i32)
    (loop $forever (br $forever))
    (unreachable))

  (func (export "tessera:plugin/engine@0.1.0#retry")
        (param i32 i32) (param $ids i32) (param $count i32) (result i32)
    (if (result i32) (local.get $count)
      (then (call $ok))
      (else (call $err (i32.const 0) (i32.const 112) (i32.const 16)))))

  (func (export "tessera:plugin/engine@0.1.0#logs")
        (param i32 i32 i32 i32) (param $offset i64) (result i32)
    (local $skip i32)
    (local.set $skip
      (if (result i32) (i64.lt_u (local.get $offset) (i64.const 14))
        (then (i32.wrap_i64 (local.get $offset)))
        (else (i32.const 14))))
    (call $ok_string (i32.add (i32.const 192) (local.get $skip))
                     (i32.sub (i32.const 14) (local.get $skip)))))
