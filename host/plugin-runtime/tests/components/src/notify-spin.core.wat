;; Never answers.
(module
  ;;KIT
  (func (export "tessera:plugin/notify@0.1.0#deliver") (param i32) (result i32)
    (loop $forever (br $forever))
    unreachable))
