from trading_bot.cli.main import main

raise SystemExit(main())
