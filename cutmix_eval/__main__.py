from cutmix_eval.cli import main

raise SystemExit(main())
