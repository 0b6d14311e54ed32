;; Grows its memory 16 MiB at a time until refused, then aborts (as a Rust guest does on
;; allocation failure).
(module
  ;;KIT
  (func (export "tessera:plugin/routing@0.1.0#route")
        (param i32 i32 i32 i32 i32 i32) (result i32)
    (loop $more
      (br_if $more (i32.ne (memory.grow (i32.const 256)) (i32.const -1))))
    unreachable))
