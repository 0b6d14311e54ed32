;; Answers with no decisions at all, whatever it is asked.
(module
  ;;KIT
  (func (export "tessera:plugin/routing@0.1.0#route")
        (param i32 i32 i32 i32 i32 i32) (result i32)
    (call $ok (i32.const 0) (i32.const 0))))
