;; Answers err(unavailable("backend down")).
(module
  ;;KIT
  (data (i32.const 16) "backend down")
  (func (export "tessera:plugin/routing@0.1.0#route")
        (param i32 i32 i32 i32 i32 i32) (result i32)
    (local $ret i32)
    (local.set $ret (call $realloc (i32.const 0) (i32.const 0) (i32.const 4) (i32.const 16)))
    (i32.store8 (local.get $ret) (i32.const 1))            ;; err
    (i32.store8 offset=4 (local.get $ret) (i32.const 1))   ;; plugin-error.unavailable
    (i32.store offset=8 (local.get $ret) (i32.const 16))
    (i32.store offset=12 (local.get $ret) (i32.const 12))
    (local.get $ret)))
