from predictors.cli import main

raise SystemExit(main())
